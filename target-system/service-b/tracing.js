// OpenTelemetry setup for service B, loaded before the server (`node --require ./tracing.js`).
// Exports OTLP traces, metrics and logs to OTEL_EXPORTER_OTLP_ENDPOINT: gRPC by default,
// HTTP/protobuf when OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, HTTP/JSON when it is http/json.
// The server's pino logger is bridged to the logs SDK (with the trace context of the request it
// logs in). Metrics: the HTTP server's request durations (http instrumentation) and the
// runtime's event loop and heap (runtime-node instrumentation), every
// OTEL_METRIC_EXPORT_INTERVAL ms (10 s by default).
const { NodeSDK } = require('@opentelemetry/sdk-node');
const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http');
const { ExpressInstrumentation } = require('@opentelemetry/instrumentation-express');
const { PinoInstrumentation } = require('@opentelemetry/instrumentation-pino');
const { RuntimeNodeInstrumentation } = require('@opentelemetry/instrumentation-runtime-node');
const { BatchLogRecordProcessor } = require('@opentelemetry/sdk-logs');
const { PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');
const { resourceFromAttributes } = require('@opentelemetry/resources');

const protocol = process.env.OTEL_EXPORTER_OTLP_PROTOCOL || 'grpc';
const kind = { 'http/protobuf': 'proto', 'http/json': 'http' }[protocol] || 'grpc';
const traceExporter = new (require(`@opentelemetry/exporter-trace-otlp-${kind}`).OTLPTraceExporter)();
const logExporter = new (require(`@opentelemetry/exporter-logs-otlp-${kind}`).OTLPLogExporter)();
const metricExporter = new (require(`@opentelemetry/exporter-metrics-otlp-${kind}`).OTLPMetricExporter)();

const sdk = new NodeSDK({
  resource: resourceFromAttributes({ 'service.name': process.env.OTEL_SERVICE_NAME || 'service-b' }),
  traceExporter,
  metricReaders: [
    new PeriodicExportingMetricReader({
      exporter: metricExporter,
      exportIntervalMillis: Number(process.env.OTEL_METRIC_EXPORT_INTERVAL || 10000),
    }),
  ],
  logRecordProcessors: [
    new BatchLogRecordProcessor({
      exporter: logExporter,
      scheduledDelayMillis: Number(process.env.OTEL_BLRP_SCHEDULE_DELAY || 1000),
    }),
  ],
  instrumentations: [
    new HttpInstrumentation(),
    new ExpressInstrumentation(),
    new PinoInstrumentation(),
    new RuntimeNodeInstrumentation(),
  ],
});
sdk.start();

function shutdown() {
  sdk.shutdown().finally(() => process.exit(0));
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
