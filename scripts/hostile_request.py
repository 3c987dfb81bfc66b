#!/usr/bin/env python3
# One OTLP/gRPC request: a 200 KB service.name and 10,000 minimal server spans.
import sys, time, grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts, trace_service_pb2_grpc as tsg
from opentelemetry.proto.trace.v1 import trace_pb2 as t
from opentelemetry.proto.common.v1 import common_pb2 as c
from opentelemetry.proto.resource.v1 import resource_pb2 as r
port = sys.argv[1]
now = time.time_ns()
spans = [t.Span(trace_id=(i + 1).to_bytes(16, 'big'), span_id=(i + 1).to_bytes(8, 'big'), name="s",
                kind=t.Span.SPAN_KIND_SERVER, start_time_unix_nano=now - 5_000_000, end_time_unix_nano=now)
         for i in range(10_000)]
res = r.Resource(attributes=[c.KeyValue(key="service.name", value=c.AnyValue(string_value="x" * 200_000))])
req = ts.ExportTraceServiceRequest(resource_spans=[t.ResourceSpans(resource=res, scope_spans=[t.ScopeSpans(spans=spans)])])
print("request bytes", req.ByteSize())
stub = tsg.TraceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
stub.Export(req, timeout=30)
print("sent")
