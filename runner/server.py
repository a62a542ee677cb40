"""`python -m runner serve`: the stack behind a loopback moto endpoint, handlers running here.

Clients in other processes use the endpoint like AWS (boto3, the aws CLI with --endpoint-url):
they put records on the stack's streams, and what the stack publishes to its SNS topics lands on
an "outbox" SQS queue (raw delivery; every topic unless the caller names some), where they read it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moto.server import ThreadedMotoServer

from runner.clock import RealClock
from runner.pipeline import LocalPipeline

log = logging.getLogger(__name__)


def create_outbox(pipeline: LocalPipeline, queue_name: str, topics: Sequence[str] = ()) -> dict[str, Any]:
    """A queue subscribed with raw delivery to SNS topics (logical ids or ARNs; default: every topic)."""
    sqs, sns = pipeline.client("sqs"), pipeline.client("sns")
    url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack_topics = pipeline.stack.of_type("AWS::SNS::Topic")
    topics = [stack_topics[t].ref if t in stack_topics else t for t in topics] or [r.ref for r in stack_topics.values()]
    for topic in topics:
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return {"queue_url": url, "queue_arn": arn, "topics": topics}


def one_request_at_a_time(app: Any) -> Any:
    """AWS applies each request atomically; moto takes no locks (two concurrent Kinesis puts once got one
    position). SQS long polls pass: moto waits inside them, and they would hold up every other client."""
    lock = threading.Lock()

    def locked(environ: Any, start_response: Any) -> Any:
        if str(environ.get("HTTP_X_AMZ_TARGET", "")).endswith(".ReceiveMessage"):
            return app(environ, start_response)
        with lock:
            return app(environ, start_response)

    return locked


def serve(
    template: str | Path,
    *,
    port: int,
    ready_file: str | Path | None = None,
    poll_interval_s: float = 0.2,
    outbox: str | None = "outbox",
    outbox_topics: Sequence[str] = (),
    stop: threading.Event | None = None,
    **pipeline_options: Any,
) -> int:
    """Run until SIGTERM/SIGINT (or `stop` is set); returns a process exit code.

    outbox names the queue subscribed to outbox_topics (None: no outbox); pipeline_options go to
    LocalPipeline (stack_name, env_overrides, parameter_overrides, log_dir, region ...).
    """
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    stopping = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    server._server.app = one_request_at_a_time(server._server.app)  # type: ignore[union-attr]  # moto has no hook
    host, bound_port = server.get_host_and_port()
    endpoint = f"http://{host}:{bound_port}"
    pipeline = LocalPipeline(template, clock=RealClock(), endpoint_url=endpoint, **pipeline_options)
    try:
        pipeline.start()
        ready = {**pipeline.describe(), "port": bound_port, "pid": os.getpid()}
        if outbox:
            created = create_outbox(pipeline, outbox, outbox_topics)
            ready.update({f"outbox_{key}": value for key, value in created.items()})
        if ready_file is not None:
            # Atomically: a client polling for the file never reads half of it.
            path = Path(ready_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_name(path.name + ".tmp").write_text(json.dumps(ready, indent=2) + "\n", encoding="utf-8")
            os.replace(path.with_name(path.name + ".tmp"), path)
        log.info("serving %s at %s", pipeline.stack_name, endpoint)
        print(json.dumps({"ready": True, "endpoint_url": endpoint}), flush=True)
        last_refresh = time.monotonic()
        while not stopping.is_set():
            worked = pipeline.poll_once(honor_window=True)
            pipeline.tick()
            if time.monotonic() - last_refresh > 5.0:  # streams resharded by a client
                pipeline.refresh_shards()
                last_refresh = time.monotonic()
            if not worked:
                stopping.wait(poll_interval_s)
        return 0
    finally:
        pipeline.close()
        server.stop()
