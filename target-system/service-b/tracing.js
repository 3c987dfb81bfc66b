// OpenTelemetry setup for service B, loaded before the server (`node --require ./tracing.js`).
// Exports OTLP to OTEL_EXPORTER_OTLP_ENDPOINT: gRPC by default, HTTP/protobuf when
// OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, HTTP/JSON when it is http/json.
const { NodeSDK } = require('@opentelemetry/sdk-node');
const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http');
const { ExpressInstrumentation } = require('@opentelemetry/instrumentation-express');
const { resourceFromAttributes } = require('@opentelemetry/resources');

const protocol = process.env.OTEL_EXPORTER_OTLP_PROTOCOL || 'grpc';
const exporterModule = {
  'http/protobuf': '@opentelemetry/exporter-trace-otlp-proto',
  'http/json': '@opentelemetry/exporter-trace-otlp-http',
}[protocol] || '@opentelemetry/exporter-trace-otlp-grpc';
const traceExporter = new (require(exporterModule).OTLPTraceExporter)();

const sdk = new NodeSDK({
  resource: resourceFromAttributes({ 'service.name': process.env.OTEL_SERVICE_NAME || 'service-b' }),
  traceExporter,
  instrumentations: [new HttpInstrumentation(), new ExpressInstrumentation()],
});
sdk.start();

function shutdown() {
  sdk.shutdown().finally(() => process.exit(0));
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
