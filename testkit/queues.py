"""Reading SQS queues of a local stack: the push outbox and the dead-letter queues."""

from __future__ import annotations

import json
import time
from typing import Any

from runner.pipeline import LocalPipeline


def queue_url(pipe: LocalPipeline, queue: str) -> str:
    """Queue URL for a logical id, a queue name or a URL."""
    if queue in pipe.stack.of_type("AWS::SQS::Queue"):
        return pipe.resources[queue].ref
    if queue.startswith(("http://", "https://")):
        return queue
    return str(pipe.client("sqs").get_queue_url(QueueName=queue)["QueueUrl"])


def receive_messages(pipe: LocalPipeline, queue: str, *, max_messages: int = 100_000, wait_s: float = 0.0) -> list[str]:
    """Receive (and delete) message bodies from a queue until it is empty or max_messages."""
    sqs, url = pipe.client("sqs"), queue_url(pipe, queue)
    bodies: list[str] = []
    deadline = time.monotonic() + wait_s
    while len(bodies) < max_messages:
        page = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(10, max_messages - len(bodies)))
        messages = page.get("Messages", [])
        if not messages and time.monotonic() >= deadline:
            break
        if not messages:
            time.sleep(0.05)
            continue
        bodies.extend(m["Body"] for m in messages)
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        sqs.delete_message_batch(QueueUrl=url, Entries=entries)
    return bodies


def receive_json(pipe: LocalPipeline, queue: str, **kwargs: Any) -> list[Any]:
    return [json.loads(body) for body in receive_messages(pipe, queue, **kwargs)]
