"""A conversion worker process (started by :class:`~jobengine.imaging.pool.ConversionPool`).

Protocol: JSON lines. The parent writes ``{"id", "op", "src", "dst_dir", "base_name", "token"}``
plus ``query`` (op ``convert``, the default) or ``params`` (the keyword arguments of the other
operations, :data:`OPERATIONS`) on stdin; the worker answers on its original stdout with
``progress`` lines (one per file written), then ``done`` (``paths``) or ``error`` (``type``,
``reason``). Anything a library prints goes to stderr, which the parent keeps for crash reports.
The worker sets its memory cap (RLIMIT_AS) and no core dumps before ImageMagick is loaded, then
checks that the project policy is in force (the ``XC`` coder must be refused) and says ``ready``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import resource
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from jobengine.errors import IpsFault
from jobengine.imaging.errors import FAULTS_BY_NAME
from jobengine.imaging.limits import Limits

__all__ = ["DEFAULT_ENGINE", "OPERATIONS", "main"]

DEFAULT_ENGINE = "jobengine.imaging.convert:convert_file"
# The operations besides ``convert``: each is f(src, dst_dir, base_name, limits, *, token,
# progress, **params) -> written paths.
OPERATIONS = {
    "pyramid": "jobengine.imaging.ptif:make_pyramid",
    "rip_pdf": "jobengine.imaging.rip:rip_pdf",
    "trim_box": "jobengine.imaging.trim:trim_box",
}
log = logging.getLogger("jobengine.imaging.worker")


def _set_rlimits(limits: Limits) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))


def _protocol_stream() -> BinaryIO:
    """A private copy of stdout for the protocol; fd 1 then points at stderr."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def _init_magick(limits: Limits) -> str:
    """ImageMagick resource limits from ``limits`` (they can only lower the policy's), the policy
    check, and the version string."""
    import wand.resource
    import wand.version
    from wand.exceptions import PolicyError
    from wand.image import Image

    wand.resource.limits["memory"] = limits.magick_memory_bytes
    wand.resource.limits["map"] = limits.magick_map_bytes
    wand.resource.limits["disk"] = limits.magick_disk_bytes
    wand.resource.limits["thread"] = 1
    try:
        Image(filename="xc:white").close()
    except PolicyError:
        return str(wand.version.MAGICK_VERSION)
    raise SystemExit(
        "the jobengine ImageMagick policy is not in force (xc: was allowed); "
        f"MAGICK_CONFIGURE_PATH={os.environ.get('MAGICK_CONFIGURE_PATH')!r}"
    )


def _load(engine: str) -> Callable[..., list[Path]]:
    module, _, name = engine.partition(":")
    func: Callable[..., list[Path]] = getattr(importlib.import_module(module), name)
    return func


class _Server:
    def __init__(self, out: BinaryIO, engine: Callable[..., list[Path]], limits: Limits) -> None:
        self.out = out
        self.engine = engine
        self.limits = limits

    def send(self, message: dict[str, Any]) -> None:
        self.out.write(json.dumps(message).encode() + b"\n")

    def handle(self, msg: dict[str, Any]) -> None:
        from jobengine.imaging.modifiers import parse_modifiers

        rid = msg["id"]

        def progress(path: Path) -> None:
            self.send({"id": rid, "event": "progress", "path": str(path)})

        try:
            src, dst_dir, base_name = Path(msg["src"]), Path(msg["dst_dir"]), msg["base_name"]
            op = msg.get("op", "convert")
            if op == "convert":
                req = parse_modifiers(msg["query"])
                scratch = {"durable": False} if msg.get("durable") is False else {}
                paths = self.engine(
                    src,
                    dst_dir,
                    req,
                    base_name,
                    self.limits,
                    token=msg["token"],
                    progress=progress,
                    **scratch,
                )
            else:
                paths = _load(OPERATIONS[op])(
                    src,
                    dst_dir,
                    base_name,
                    self.limits,
                    token=msg["token"],
                    progress=progress,
                    **msg.get("params", {}),
                )
        except IpsFault as fault:
            kind = (
                type(fault).__name__
                if type(fault).__name__ in FAULTS_BY_NAME
                else "ConversionFailed"
            )
            self.send({"id": rid, "event": "error", "type": kind, "reason": fault.reason})
        except Exception as exc:  # a bug or a library error we did not map: report, keep serving
            traceback.print_exc(file=sys.stderr)
            reason = f"unexpected {type(exc).__name__}: {exc}"
            self.send({"id": rid, "event": "error", "type": "ConversionFailed", "reason": reason})
        else:
            self.send({"id": rid, "event": "done", "paths": [str(p) for p in paths]})


def main(argv: list[str] | None = None) -> None:
    """Run the worker loop until stdin closes; ``argv[1]`` is the JSON configuration."""
    config = json.loads((argv or sys.argv)[1])
    limits = Limits(**config["limits"])
    _set_rlimits(limits)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    out = _protocol_stream()
    engine = _load(config.get("engine") or DEFAULT_ENGINE)
    version = _init_magick(limits)
    server = _Server(out, engine, limits)
    server.send({"event": "ready", "pid": os.getpid(), "magick": version})
    for line in sys.stdin.buffer:
        if line.strip():
            server.handle(json.loads(line))


if __name__ == "__main__":
    main()
