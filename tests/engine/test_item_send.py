"""Sending a run's items (dispatch.send_items): pipelined on plain Redis, a group elsewhere.

A fanned-out run's items used to go as one Celery group, each message and its ``task-sent``
event a round trip of their own; on Redis they now go :data:`~jobengine.engine.dispatch.
ITEM_BATCH` to a pipelined round trip, through the sender the start messages use (whose
envelopes ``tests/engine/test_hot_path.py`` compares with kombu's). Either way, with one item a
message (``chunk=1``; chunks of several: tests/engine/test_item_chunks.py), every item is one
message with the same task name, id and arguments, in order.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from jobengine.embedded import redis_client
from jobengine.engine import dispatch
from jobengine.settings import get_settings
from tests.support.helpers import queued_messages as _messages

LABELS = {"job": "47|Many|", "company": "47", "run": "Many_2026"}


def _expected(n: int) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("jobengine.export.item", f"t-1-{seq}", {"run_id": 1, "seq": seq, "item": f"a|{seq}",
                                                 **LABELS})
        for seq in range(n)
    ]  # fmt: skip


@pytest.mark.parametrize("way", ["pipelined", "group"])
def test_every_item_is_one_message_in_order(
    private_queue: tuple[dict[str, str], str], way: str
) -> None:
    _, queue = private_queue
    client: redis.Redis = redis_client(get_settings())
    n = dispatch.ITEM_BATCH * 2 + 50  # three round trips when pipelined
    items = [(s, f"a|{s}") for s in range(n)]
    try:
        if way == "pipelined":
            dispatch.send_items("export", 1, "t-1", items, LABELS, chunk=1)
        else:  # the way on a broker the pipelined sender does not cover (RabbitMQ)
            dispatch._send_group("jobengine.export.item", 1, "t-1", [[i] for i in items], LABELS)
        assert _messages(client, queue) == _expected(n)
    finally:
        client.delete(queue)
