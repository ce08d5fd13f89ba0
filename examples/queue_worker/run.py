"""One trace per job across a queue, and the pipeline metrics, with a producer and two worker processes.

    python examples/queue_worker/run.py

The producer (this process, service ``queue-producer``) puts twelve thumbnail jobs on a
``multiprocessing`` queue. Each job's message carries its trace context and enqueue
time (``pipe.inject()``); two worker processes (service ``queue-worker``) take jobs off
the queue and process each in a stage that continues the job's trace
(``pipe.stage(..., carrier=headers)``). The same code works with Redis, RabbitMQ or
Kafka: only the message headers have to travel with the job.

Telemetry goes to the usual OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``, default
``localhost:4317``); nothing needs to listen there for this to run.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import sys
import time
from collections import Counter
from typing import Any

from opentelemetry import trace

import platform_otel

# Fine at module level, before init(): the pipeline reports once init() has run.
pipe = platform_otel.pipeline("thumbnails")
tracer = trace.get_tracer("example.queue_worker")
log = logging.getLogger("example.queue_worker")

PHOTOS = [f"photo-{n:02}.jpg" for n in range(1, 11)] + ["broken.jpg", "empty.jpg"]


def render(photo: str) -> None:
    """The work itself: its span is a child of the stage span, in the job's trace."""
    with tracer.start_as_current_span("render thumbnail") as span:
        span.set_attribute("app.photo", photo)
        if photo.startswith("broken"):
            raise ValueError(f"{photo}: not an image")
        time.sleep(0.08)


def worker(jobs: Any, results: Any) -> None:
    """A consumer process: its own init(), one stage per job, continued from the job's headers."""
    telemetry = platform_otel.init(service_name="queue-worker")
    while (msg := jobs.get()) is not None:
        outcome = "success"
        # What pipeline.lag records for this job: enqueue time (from the headers) to stage start.
        waited = time.time() - float(msg["headers"]["pipeline-enqueued-at"])
        try:
            # carrier=: continue the producer's trace and take the enqueue time for pipeline.lag.
            with pipe.stage("render", item_id=msg["id"], carrier=msg["headers"]) as run:
                trace_id = format(run.span.get_span_context().trace_id, "032x")
                if msg["photo"].startswith("empty"):
                    run.set_outcome("skipped")  # nothing to render: counted as skipped
                else:
                    render(msg["photo"])
                    log.info("rendered %s", msg["photo"], extra={"app.job_id": msg["id"]})
                outcome = run.outcome
        except ValueError:
            outcome = "failure"  # the stage counted it and recorded the exception on its span
        results.put((msg["id"], msg["photo"], os.getpid(), outcome, waited, trace_id))
    telemetry.shutdown()  # flush before the process exits


def depth_of(jobs: Any) -> int | None:
    """Queue depth for pipeline.queue.depth; None (no sample) where qsize() is not implemented."""
    try:
        return int(jobs.qsize())
    except NotImplementedError:  # macOS
        return None


def main() -> int:
    telemetry = platform_otel.init(service_name="queue-producer")
    ctx = multiprocessing.get_context("spawn")  # fresh worker processes, each with its own init()
    jobs, results = ctx.Queue(), ctx.Queue()
    pipe.observe_queue("jobs", depth=lambda: depth_of(jobs))
    workers = [ctx.Process(target=worker, args=(jobs, results)) for _ in range(2)]
    for process in workers:
        process.start()

    for n, photo in enumerate(PHOTOS, 1):
        job_id = f"job-{n:02}"
        with pipe.stage("enqueue", item_id=job_id):
            # The trace context and enqueue time, as strings: fit any broker's message headers.
            jobs.put({"id": job_id, "photo": photo, "headers": pipe.inject()})
    print(f"enqueued {len(PHOTOS)} jobs; queue depth now {depth_of(jobs)} (workers still starting)")

    done = []
    try:
        for _ in PHOTOS:
            done.append(results.get(timeout=30))
    except queue.Empty:
        print("the workers did not finish in time")
    for _ in workers:
        jobs.put(None)
    for process in workers:
        process.join(15)
    telemetry.shutdown()

    print("\njob     photo          worker pid  outcome   waited in queue  trace_id")
    for job_id, photo, pid, outcome, waited, trace_id in sorted(done):
        print(f"{job_id}  {photo:<13}  {pid:<10}  {outcome:<8}  {waited:6.2f} s         {trace_id}")
    counts = Counter(r[3] for r in done)
    print(f"\npipeline.items by outcome: {dict(sorted(counts.items()))}")
    print(f"workers: {len({r[2] for r in done})} processes")
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317")
    print(f"spans, metrics and logs were exported over OTLP to {endpoint}")
    print(f"look up trace {done[0][5] if done else '-'} in your trace backend: "
          "thumbnails enqueue -> thumbnails render -> render thumbnail")  # fmt: skip
    ok = len(done) == len(PHOTOS) and all(p.exitcode == 0 for p in workers)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
