"""`python -m runner serve`: the stack behind a loopback moto endpoint, handlers running here.

Clients in other processes use the endpoint like AWS (boto3, the aws CLI with --endpoint-url):
they put records on the stream, and every push the stack publishes to its SNS topic(s) lands on
the "push-outbox" SQS queue (raw delivery), where they can read it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from moto.server import ThreadedMotoServer

from runner.clock import RealClock
from runner.pipeline import EnvOverrides, LocalPipeline

log = logging.getLogger(__name__)

OUTBOX_QUEUE = "push-outbox"
LOOPBACK = "127.0.0.1"


def create_outbox(
    pipeline: LocalPipeline, queue_name: str = OUTBOX_QUEUE, topic_arns: list[str] | None = None
) -> dict[str, Any]:
    """A queue subscribed with raw delivery to the given SNS topics (default: every topic of the stack)."""
    sqs, sns = pipeline.client("sqs"), pipeline.client("sns")
    url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topics = topic_arns or [r.ref for r in pipeline.resources.values() if r.type == "AWS::SNS::Topic" and r.created]
    for topic_arn in topics:
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"RawMessageDelivery": "true"},
        )
    return {"queue_url": url, "queue_arn": arn, "topics": topics}


def _write_atomically(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def serve(
    *,
    port: int,
    template: str | Path = "template.yaml",
    stack_name: str = "nudge-local",
    ready_file: str | Path | None = None,
    log_dir: str | Path | None = None,
    parameter_overrides: Mapping[str, Any] | None = None,
    env_overrides: EnvOverrides | None = None,
    region: str = "us-east-1",
    poll_interval_s: float = 0.2,
    stop: threading.Event | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or `stop` is set). Returns a process exit code."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    stop = stop or threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    server = ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    server.start()
    host, bound_port = server.get_host_and_port()
    endpoint = f"http://{host}:{bound_port}"
    pipeline = LocalPipeline(
        template,
        stack_name=stack_name,
        clock=RealClock(),
        env_overrides=env_overrides,
        log_dir=log_dir,
        parameter_overrides=parameter_overrides,
        endpoint_url=endpoint,
        region=region,
    )
    try:
        pipeline.start()
        outbox = create_outbox(pipeline)
        ready = {
            **pipeline.describe(),
            "endpoint_url": endpoint,
            "port": bound_port,
            "pid": os.getpid(),
            "push_outbox_queue_url": outbox["queue_url"],
            "push_outbox_queue_arn": outbox["queue_arn"],
        }
        if ready_file is not None:
            _write_atomically(Path(ready_file), ready)
        log.info("serving %s at %s", stack_name, endpoint)
        print(json.dumps({"ready": True, "endpoint_url": endpoint}), flush=True)
        last_refresh = time.monotonic()
        while not stop.is_set():
            worked = pipeline.poll_once(honor_window=True)
            pipeline.tick()
            if time.monotonic() - last_refresh > 5.0:
                pipeline.refresh_shards()
                last_refresh = time.monotonic()
            if not worked:
                stop.wait(poll_interval_s)
        return 0
    finally:
        pipeline.close()
        server.stop()
