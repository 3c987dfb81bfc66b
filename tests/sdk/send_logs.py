"""Logs like a service's, through the official OpenTelemetry Python SDK's logging bridge:
ordinary INFO and WARNING lines for a while, then a burst of one ERROR statement never logged
before, then ordinary lines again.

Usage: send_logs.py --endpoint HOST:PORT --service NAME --normal SECONDS --burst N --after SECONDS
Prints one JSON line: {"ok", "records", "burst_start_ns", "burst_end_ns"}.
"""
import argparse
import json
import logging
import random
import sys
import time

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource


def ordinary(logger, rng):
    r = rng.random()
    if r < 0.6:
        logger.info("Order %s saved for user u%d", rng.randrange(10**6), rng.randrange(500))
    elif r < 0.9:
        logger.info("Cache hit for key item:%d", rng.randrange(10**4))
    else:
        logger.warning("Slow query took %d ms", 200 + rng.randrange(300))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--service", default="sdk-logs")
    p.add_argument("--normal", type=float, default=12.0)
    p.add_argument("--burst", type=int, default=40)
    p.add_argument("--after", type=float, default=3.0)
    p.add_argument("--rate", type=float, default=40.0, help="ordinary lines a second")
    a = p.parse_args()

    exporter = OTLPLogExporter(endpoint=a.endpoint, insecure=True)
    results = []
    original = exporter.export

    def export(batch, *args, **kw):
        r = original(batch, *args, **kw)
        results.append(getattr(r, "name", str(r)) == "SUCCESS")
        return r

    exporter.export = export
    lp = LoggerProvider(resource=Resource.create({"service.name": a.service}))
    lp.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=200))
    logger = logging.getLogger("shop.orders")
    logger.propagate = False
    logger.addHandler(LoggingHandler(logger_provider=lp))
    logger.setLevel(logging.INFO)
    rng = random.Random(7)
    records = 0

    def steady(seconds):
        nonlocal records
        end = time.time() + seconds
        while time.time() < end:
            ordinary(logger, rng)
            records += 1
            time.sleep(rng.expovariate(a.rate))

    steady(a.normal)
    # The burst starts just after a whole second, so it falls in one window of a second or
    # longer (windows are aligned to the epoch) and that window is the template's first.
    steady(1.05 - time.time() % 1.0)
    burst_start = time.time_ns()
    for i in range(a.burst):
        logger.error("Connection refused to db-%d.internal:%d", i % 3, 5432)
        records += 1
        time.sleep(0.5 / a.burst)
    burst_end = time.time_ns()
    steady(a.after)
    lp.shutdown()
    ok = bool(results) and all(results)
    print(json.dumps({"ok": ok, "records": records, "burst_start_ns": burst_start,
                      "burst_end_ns": burst_end}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
