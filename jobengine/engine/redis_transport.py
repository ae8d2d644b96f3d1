"""kombu's Redis transport, with channels that say "connection closed" once their connection is.

When a worker loses Redis, Celery's consumer collects the broken connection and closes it; kombu
then forgets the transport's ``client`` (the kombu ``Connection`` it reads the broker's address
from). A channel of that connection can still be used afterwards:

* its close, when the collect's close failed half way (the channel was waiting on a ``BRPOP``
  and reading the dead socket raised), runs again and puts its unacknowledged messages back;
* the acknowledgement of a task that finished while the broker was away runs on the event
  loop after the new connection is up, through the message's old channel.

Both build a Redis client from the forgotten ``client`` and raised ``AttributeError`` inside
kombu. Celery takes that for a bug, not for a lost connection: the worker stopped
("Unrecoverable error") and nothing ran until a worker was started again.

Here such a channel raises Redis's own ``ConnectionError`` instead, which Celery and kombu
handle as what it is: the close goes on, the acknowledgement is logged as not done ("Couldn't
ack") and the worker reconnects. The message stays in Redis's unacknowledged set until the
visibility timeout gives it back, and the store's guards run its run once either way: a
finished run's message is then a duplicate, and a run whose message waits there is sent again
by the scheduler's sweep of stalled runs.

:func:`install` makes ``redis://``, ``rediss://`` and ``redis+socket://`` broker URLs use it.
"""

from __future__ import annotations

from typing import Any

import kombu.transport
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["Channel", "Transport", "install"]

_PATH = f"{__name__}:Transport"
_ALIASES = ("redis", "rediss")  # redis+socket:// is the "redis" transport too


class Channel(kombu_redis.Channel):
    """A Redis channel that says its connection is closed once it is (see the module's doc)."""

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection  # None once the channel's close has finished
        if transport is None or transport.client is None:  # the connection was given up
            raise RedisConnectionError("the broker connection of this channel was closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        return params


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


def install() -> None:
    """Resolve the ``redis`` and ``rediss`` transports to :class:`Transport` from now on."""
    for alias in _ALIASES:
        if kombu.transport.TRANSPORT_ALIASES.get(alias) != _PATH:
            kombu.transport.TRANSPORT_ALIASES[alias] = _PATH
            kombu.transport._transport_cache.pop(alias, None)  # resolved before: forget it
