"""The Redis transport (jobengine.engine.redis_transport) is the one every Redis URL of the app
resolves to.

What it is for (a channel of a connection given up fails as a lost connection does, not with an
AttributeError that stopped the worker) is proven where it happens, with a worker through four
Redis restarts while one of its children converts: tests/faults/test_outages.py.
"""

from __future__ import annotations

from kombu import Connection

from jobengine.engine.app import app
from jobengine.engine.redis_transport import Transport


def test_every_redis_url_of_the_app_uses_the_transport(base_env: dict[str, str]) -> None:
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)
    for url in ("redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0", "redis+socket:///nowhere"):
        assert isinstance(Connection(url).transport, Transport), url
