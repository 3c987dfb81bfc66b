"""Sends spans to otelwatch with the official OpenTelemetry Python SDK and records what it sent.

Usage: send_spans.py --protocol grpc|http --endpoint URL --spans N --service NAME
                     [--gzip] [--record FILE] [--ca PEM] [--header KEY=VALUE ...]
  --ca: send over TLS, trusting this CA (gRPC; for HTTP give an https:// URL too).
  --header: sent with every export (e.g. authorization=Bearer TOKEN).
Exits 1 if any export was not acknowledged as a success.
"""
import argparse
import json
import os
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)


class Recording(SpanExporter):
    """Delegates to the real OTLP exporter and remembers what was acknowledged."""

    def __init__(self, inner):
        self.inner = inner
        self.ok = []
        self.failures = 0

    def export(self, spans):
        result = self.inner.export(spans)
        if result == SpanExportResult.SUCCESS:
            self.ok.extend(spans)
        else:
            self.failures += 1
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", choices=["grpc", "http"], required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--spans", type=int, default=100)
    p.add_argument("--service", default="sdk-test")
    p.add_argument("--gzip", action="store_true")
    p.add_argument("--record")
    p.add_argument("--ca")
    p.add_argument("--header", action="append", default=[])
    a = p.parse_args()
    headers = dict(h.split("=", 1) for h in a.header) or None

    if a.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.http import Compression
    compression = Compression.Gzip if a.gzip else Compression.NoCompression
    if a.protocol == "grpc" and a.ca:
        import grpc
        with open(a.ca, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        inner = OTLPSpanExporter(endpoint=a.endpoint, insecure=False, credentials=credentials,
                                 compression=compression, timeout=10, headers=headers)
    elif a.protocol == "grpc":
        inner = OTLPSpanExporter(endpoint=a.endpoint, insecure=True, compression=compression, timeout=10,
                                 headers=headers)
    else:
        if a.ca:
            # requests prefers REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment over the
            # session's CA file the exporter sets, so point them at the same file.
            os.environ["REQUESTS_CA_BUNDLE"] = a.ca
            os.environ.pop("CURL_CA_BUNDLE", None)
        inner = OTLPSpanExporter(endpoint=a.endpoint, compression=compression, timeout=10,
                                 certificate_file=a.ca if a.ca else None, headers=headers)
    rec = Recording(inner)
    provider = TracerProvider(resource=Resource.create({"service.name": a.service}))
    provider.add_span_processor(BatchSpanProcessor(rec, max_export_batch_size=64, schedule_delay_millis=100))
    tracer = provider.get_tracer("otelwatch.tests")

    made = 0
    while made < a.spans:
        with tracer.start_as_current_span("GET /start", kind=trace.SpanKind.SERVER) as s:
            s.set_attribute("http.request.method", "GET")
            s.set_attribute("http.route", "/start")
            s.set_attribute("http.response.status_code", 200)
            made += 1
            if made < a.spans:
                with tracer.start_as_current_span("GET", kind=trace.SpanKind.CLIENT) as c:
                    c.set_attribute("server.address", "service-b")
                    c.set_attribute("peer.service", "service-b")
                    made += 1
    provider.shutdown()

    if a.record:
        with open(a.record, "w") as f:
            for s in rec.ok:
                ctx = s.get_span_context()
                f.write(json.dumps({
                    "trace_id": format(ctx.trace_id, "032x"),
                    "span_id": format(ctx.span_id, "016x"),
                    "name": s.name,
                    "service": a.service,
                }) + "\n")
    print(f"exported {len(rec.ok)} spans, {rec.failures} failed exports")
    sys.exit(1 if rec.failures or len(rec.ok) != a.spans else 0)


if __name__ == "__main__":
    main()
