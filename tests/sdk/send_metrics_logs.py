"""Sends metrics and logs to otelwatch with the official OpenTelemetry Python SDK.

Usage: send_metrics_logs.py --protocol grpc|http --endpoint BASE --service NAME --logs N
  BASE is host:port for gRPC, http://host:port for HTTP (the signal path is appended).
Prints one JSON line: {"logs_ok", "metrics_ok", "data_points", "log_records"}; exits 1 unless both succeeded.
"""
import argparse
import json
import logging
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", choices=["grpc", "http"], required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--service", default="sdk-signals")
    p.add_argument("--logs", type=int, default=5)
    a = p.parse_args()
    if a.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        metric_exp = OTLPMetricExporter(endpoint=a.endpoint, insecure=True)
        log_exp = OTLPLogExporter(endpoint=a.endpoint, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        metric_exp = OTLPMetricExporter(endpoint=a.endpoint + "/v1/metrics")
        log_exp = OTLPLogExporter(endpoint=a.endpoint + "/v1/logs")

    resource = Resource.create({"service.name": a.service})
    results = {"metrics": [], "logs": [], "points": 0}

    orig_metric_export = metric_exp.export
    def metric_export(data, *args, **kw):
        r = orig_metric_export(data, *args, **kw)
        results["metrics"].append(r == MetricExportResult.SUCCESS)
        if r == MetricExportResult.SUCCESS:
            results["points"] += sum(
                len(m.data.data_points)
                for rm in data.resource_metrics
                for sm in rm.scope_metrics
                for m in sm.metrics
            )
        return r
    metric_exp.export = metric_export

    orig_log_export = log_exp.export
    def log_export(batch, *args, **kw):
        r = orig_log_export(batch, *args, **kw)
        results["logs"].append(getattr(r, "name", str(r)) == "SUCCESS")
        return r
    log_exp.export = log_export

    reader = PeriodicExportingMetricReader(metric_exp, export_interval_millis=60000)
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    counter = mp.get_meter("otelwatch.tests").create_counter("requests_total")
    hist = mp.get_meter("otelwatch.tests").create_histogram("latency_ms")
    for i in range(10):
        counter.add(1, {"route": "/start"})
        hist.record(10.0 + i, {"route": "/start"})
    mp.force_flush()
    mp.shutdown()

    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(SimpleLogRecordProcessor(log_exp))
    logger = logging.getLogger("otelwatch.tests")
    logger.propagate = False
    logger.addHandler(LoggingHandler(logger_provider=lp))
    logger.setLevel(logging.INFO)
    for i in range(a.logs):
        logger.warning("log line %d", i)
    lp.shutdown()

    ok = {"metrics_ok": bool(results["metrics"]) and all(results["metrics"]),
          "logs_ok": len(results["logs"]) == a.logs and all(results["logs"])}
    print(json.dumps({**ok, "data_points": results["points"], "log_records": a.logs}))
    sys.exit(0 if all(ok.values()) else 1)


if __name__ == "__main__":
    main()
