"""Service A: the entry point of the target system. `/start` and `/test` call service B's `/ping`.

Instrumented with the OpenTelemetry Python SDK (Flask and requests instrumentation), exporting
OTLP traces, metrics and logs to OTEL_EXPORTER_OTLP_ENDPOINT (gRPC by default;
OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf switches to HTTP). Its log lines go through the SDK's
logging bridge, with the trace context of the request they are logged in: one INFO line per
request served, an ERROR line for every failure (injected, or service B's). Metrics: the
request durations the Flask instrumentation records and the process's CPU and memory (system
metrics instrumentation), every OTEL_METRIC_EXPORT_INTERVAL ms (10 s by default).

Fault injection, off by default, for testing the detector:
- per request: `?delay_ms=N` adds latency here, `?fail=1` answers 500 here; `?b_delay_ms=N` and
  `?b_fail=1` are passed on to service B as its own `delay_ms` / `fail`;
- per process: FAULT_DELAY_MS and FAULT_ERROR_RATE (0..1) apply to every request.
"""
import logging
import os
import random
import time

import requests
from flask import Flask, jsonify, request
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

SERVICE_NAME = os.environ.get("OTEL_SERVICE_NAME", "service-a")
SERVICE_B_URL = os.environ.get("SERVICE_B_URL", "http://localhost:3001").rstrip("/")
FAULT_DELAY_MS = float(os.environ.get("FAULT_DELAY_MS", "0"))
FAULT_ERROR_RATE = float(os.environ.get("FAULT_ERROR_RATE", "0"))


def exporters():
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    if protocol.startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    # The endpoint from OTEL_EXPORTER_OTLP_ENDPOINT.
    return OTLPSpanExporter(), OTLPLogExporter(), OTLPMetricExporter()


resource = Resource.create({"service.name": SERVICE_NAME})
span_exporter, log_exporter, metric_exporter = exporters()
provider = TracerProvider(resource=resource)
# Export every OTEL_BSP_SCHEDULE_DELAY ms (the SDK's default is 5000); logs every
# OTEL_BLRP_SCHEDULE_DELAY ms.
provider.add_span_processor(BatchSpanProcessor(span_exporter))
trace.set_tracer_provider(provider)
log_provider = LoggerProvider(resource=resource)
log_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
set_logger_provider(log_provider)
# Every OTEL_METRIC_EXPORT_INTERVAL ms (the reader reads the variable; 10 s here by default).
metric_reader = PeriodicExportingMetricReader(
    metric_exporter,
    export_interval_millis=float(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "10000")),
)
metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[metric_reader]))
SystemMetricsInstrumentor(
    config={
        "process.cpu.time": ["user", "system"],
        "process.cpu.utilization": None,
        "process.memory.usage": None,
    }
).instrument()
log = logging.getLogger("service_a")
log.setLevel(logging.INFO)
log.addHandler(LoggingHandler(logger_provider=log_provider))

app = Flask(__name__)
FlaskInstrumentor().instrument_app(app)
# peer.service names the callee on client spans: otelwatch groups the callers' view by it.
RequestsInstrumentor().instrument(
    request_hook=lambda span, _request: span.set_attribute("peer.service", "service-b")
    if span and span.is_recording()
    else None
)
session = requests.Session()


def handle(route):
    began = time.monotonic()
    answer = respond(route)
    status = answer[1] if isinstance(answer, tuple) else 200
    if status >= 500:
        log.error("%s failed with HTTP %d: %s", route, status, answer[0].get_json().get("error"))
    else:
        log.info("%s served in %d ms", route, (time.monotonic() - began) * 1000)
    return answer


def respond(route):
    delay = FAULT_DELAY_MS + float(request.args.get("delay_ms", 0))
    if delay > 0:
        time.sleep(delay / 1000.0)
    params = {}
    if request.args.get("b_delay_ms"):
        params["delay_ms"] = request.args["b_delay_ms"]
    if request.args.get("b_fail"):
        params["fail"] = request.args["b_fail"]
    try:
        resp = session.get(f"{SERVICE_B_URL}/ping", params=params, timeout=10)
        b_status = resp.status_code
    except requests.RequestException as e:
        return jsonify(route=route, error=f"service B unreachable: {e}"), 502
    if request.args.get("fail") == "1" or (FAULT_ERROR_RATE and random.random() < FAULT_ERROR_RATE):
        return jsonify(route=route, error="injected failure"), 500
    if b_status >= 500:
        return jsonify(route=route, error=f"service B answered {b_status}"), 502
    return jsonify(route=route, service_b=b_status)


@app.route("/start")
def start():
    return handle("/start")


@app.route("/test")
def test():
    return handle("/test")


@app.route("/healthz")
def healthz():
    return "ok\n"


@app.teardown_appcontext
def _flush(_exc):
    return None


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "5000"))
    try:
        app.run(host=os.environ.get("HOST", "0.0.0.0"), port=port, threaded=True)
    finally:
        provider.shutdown()
        log_provider.shutdown()
