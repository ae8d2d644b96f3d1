"""Isolation: conversions run in long-lived worker processes, never in the caller's process.

ImageMagick can ``abort()`` or ``exit()`` on some inputs and limits (docs/imaging.md), and a
decoder bug must not reach the job engine. Each worker is a fresh interpreter running
:mod:`jobengine.imaging.worker` (not a fork: no inherited ImageMagick/OpenMP state, and it works
inside Celery's daemonic prefork children) with:

* a minimal environment: ``MAGICK_CONFIGURE_PATH`` -> ``config/policy.xml``, one thread, a
  private temporary directory for ImageMagick's pixel cache, ``HOME`` there too;
* RLIMIT_AS (``Limits.memory_bytes``), no core dumps, ImageMagick resource limits;
* a wall-clock timeout per output image, and for a PDF rip one for the whole document: on
  timeout or crash the worker is killed, whatever it half-wrote is removed, and a new worker is
  started on the next call;
* cancellation: a caller's ``cancelled()`` (the run's stop flag) is asked every
  :data:`CANCEL_POLL` seconds while a worker works and after each file it writes; when it says
  yes the worker is killed the same way and RunStopped is raised (stopJob ends a rip in flight).

Requests and replies are JSON lines (no pickle). The pool is thread-safe: ``convert`` takes an
idle worker, or waits for one.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import queue
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobengine.errors import ConfigurationError, IpsFault, RunStopped
from jobengine.imaging.errors import FAULTS_BY_NAME, ConversionFailed, ConversionTimeout
from jobengine.imaging.limits import Limits
from jobengine.imaging.modifiers import format_query
from jobengine.imaging.request import ImageRequest
from jobengine.shipped import config_dir

__all__ = [
    "ConversionPool",
    "convert",
    "default_pool",
    "pyramid",
    "rip_pdf",
    "shutdown_default_pool",
    "trim_box",
]

log = logging.getLogger(__name__)

STARTUP_SECONDS = 30.0
CANCEL_POLL = 1.0  # seconds between two looks at a caller's cancelled() while a worker works
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # jobengine/
# The worker imports jobengine.imaging without running jobengine/__init__.py, which loads the
# whole engine (SQLAlchemy, Celery: ~0.6 s and ~40 MB a worker, none of it needed to convert).
_BOOTSTRAP = (
    "import sys, types; pkg = types.ModuleType('jobengine'); pkg.__path__ = [sys.argv[1]]; "
    "sys.modules['jobengine'] = pkg; from jobengine.imaging.worker import main; main(sys.argv[1:])"
)
_PASS_ENV = (
    "PATH",
    "PYTHONPATH",
    "LD_LIBRARY_PATH",
    "MAGICK_HOME",
    "WAND_MAGICK_LIBRARY_SUFFIX",
    "JOBENGINE_IMAGING_ICC_DIRS",
)
# glibc malloc in a long-lived worker: serve ImageMagick's pixel caches and codec buffers (up to
# 32 MiB each, glibc's ceiling for this knob; a 3000x2000 Q16 image is 48 MB) from the heap and
# keep up to 64 MiB of freed memory for the next image, instead of mmap/munmap per image. That
# removes ~5,000 page faults (zeroing 20 MB) per 1200-wide conversion; RLIMIT_AS still caps it.
_MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(64 * 1024 * 1024),
}


class _Timeout(Exception):
    """The worker did not answer in time (``whole``: the call's overall limit passed)."""

    def __init__(self, whole: bool = False) -> None:
        super().__init__()
        self.whole = whole


class _Cancelled(Exception):
    """The caller's cancelled() said yes while the worker worked."""


class _Died(Exception):
    """The worker's stdout closed (it exited or was killed)."""


def _stop_asked(cancelled: Callable[[], bool] | None) -> bool:
    """Whether the caller wants the work stopped; when it cannot tell (its stop flag is in a
    store that is down for now), the work goes on and it is asked again at the next poll."""
    if cancelled is None:
        return False
    try:
        return cancelled()
    except Exception as exc:
        log.warning("cannot tell whether to stop the conversion (%s); going on", exc)
        return False


def policy_dir() -> Path:
    """The directory holding ``policy.xml`` (``JOBENGINE_IMAGING_POLICY_DIR`` or ``config/``)."""
    override = os.environ.get("JOBENGINE_IMAGING_POLICY_DIR")
    path = Path(override) if override else config_dir()
    if not (path / "policy.xml").is_file():
        raise ConfigurationError(f"no ImageMagick policy.xml in {path}")
    return path


class _Worker:
    """One worker process and its pipes."""

    def __init__(self, limits: Limits, engine: str | None, extra_env: dict[str, str]) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="jobengine-worker-"))
        self.tasks = 0
        self.stderr_tail: deque[str] = deque(maxlen=30)
        self._buffer = bytearray()
        config = json.dumps({"limits": limits.to_dict(), "engine": engine})
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - our interpreter, our module, no shell
                [sys.executable, "-c", _BOOTSTRAP, str(PACKAGE_DIR), config],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env(extra_env),
                cwd=self.tmp,
                close_fds=True,
                start_new_session=True,
            )
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        threading.Thread(target=self._drain_stderr, daemon=True, name="imaging-stderr").start()
        try:
            ready = self.read(time.monotonic() + STARTUP_SECONDS)
        except (_Timeout, _Died, ValueError):
            self.kill()
            raise ConfigurationError(f"imaging worker did not start: {self.last_error()}") from None
        log.info("imaging worker %s ready (%s)", self.proc.pid, ready.get("magick"))

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        tmp = str(self.tmp)
        env.update(
            LANG="C.UTF-8",
            HOME=tmp,
            TMPDIR=tmp,
            MAGICK_TEMPORARY_PATH=tmp,
            MAGICK_CONFIGURE_PATH=str(policy_dir()),
            MAGICK_THREAD_LIMIT="1",
            OMP_NUM_THREADS="1",
            OMP_THREAD_LIMIT="1",
            PYTHONDONTWRITEBYTECODE="1",
            **_MALLOC_ENV,
        )
        env.update(extra)
        root = str(PACKAGE_DIR.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        return env

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.stderr_tail.append(line)
                log.debug("worker %s: %s", self.proc.pid, line)
        self.proc.stderr.close()

    def read(self, deadline: float) -> dict[str, Any]:
        """The next JSON line, or _Timeout at ``deadline`` / _Died on EOF."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                raise _Timeout
            chunk = os.read(fd, 65536)
            if not chunk:
                raise _Died
            self._buffer += chunk
        line, _, rest = self._buffer.partition(b"\n")
        self._buffer = bytearray(rest)
        message: dict[str, Any] = json.loads(line)
        return message

    def call(
        self,
        request: dict[str, Any],
        timeout: float,
        written: list[str],
        *,
        until: float = math.inf,
        cancelled: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """Send one request; wait for its answer. The deadline restarts after each file, never
        past ``until`` (monotonic); ``cancelled`` is asked while waiting (see the module)."""
        assert self.proc.stdin is not None
        self.tasks += 1
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        deadline = min(time.monotonic() + timeout, until)
        while True:
            reply = self._next(deadline, until, cancelled)
            if reply.get("event") != "progress":
                return reply
            written.append(reply["path"])
            if _stop_asked(cancelled):
                raise _Cancelled
            deadline = min(time.monotonic() + timeout, until)

    def _next(
        self, deadline: float, until: float, cancelled: Callable[[], bool] | None
    ) -> dict[str, Any]:
        """The next reply by ``deadline``, looking at ``cancelled`` every CANCEL_POLL s."""
        while True:
            wait = deadline if cancelled is None else min(deadline, time.monotonic() + CANCEL_POLL)
            try:
                return self.read(wait)
            except _Timeout:
                if time.monotonic() >= deadline:
                    raise _Timeout(whole=deadline >= until) from None
                if _stop_asked(cancelled):
                    raise _Cancelled from None

    def last_error(self) -> str:
        """Exit status and the last stderr line, for a crash report."""
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        time.sleep(0.05)  # let the stderr thread catch the last lines
        status = "still running" if code is None else f"exit status {code}"
        if code is not None and code < 0:
            status = f"killed by {signal.Signals(-code).name}"
        tail = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
        return f"{status}; {tail[:300]}" if tail else status

    def kill(self) -> None:
        """Kill the process (its whole session) and remove its temporary directory."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._cleanup()

    def close(self) -> None:
        """Let the worker finish (stdin EOF), else kill it."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def _cleanup(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class ConversionPool:
    """``size`` long-lived worker processes converting images under ``limits``.

    ``engine`` (``"module:function"``, default :func:`jobengine.imaging.convert.convert_file`)
    and ``extra_env`` exist for tests and tools. Workers start lazily, on first use.
    """

    def __init__(
        self,
        size: int = 1,
        limits: Limits | None = None,
        *,
        engine: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        if size < 1:
            raise ConfigurationError("a conversion pool needs at least one worker")
        self.size = size
        self.limits = limits or Limits()
        self.engine = engine
        self.extra_env = dict(extra_env or {})
        self.pid = os.getpid()
        self._closed = False
        self._idle: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(size):
            self._idle.put(None)

    def convert(
        self,
        src: Path,
        dst_dir: Path,
        req: ImageRequest,
        base_name: str,
        *,
        timeout: float | None = None,
        cancelled: Callable[[], bool] | None = None,
        durable: bool = True,
    ) -> list[Path]:
        """Convert ``src`` into ``dst_dir`` (see ``convert_file``); returns the written paths.
        ``durable=False`` for scratch files (made again if lost): not flushed to disk first.

        Raises ConversionFailed / ConversionTimeout / InvalidParameter family faults, or
        RunStopped when ``cancelled()`` says yes meanwhile; the pool stays usable after any of
        them."""
        query: dict[str, Any] = {"query": format_query(req)}
        if not durable:
            query["durable"] = False
        return self._run(
            "convert", src, dst_dir, base_name, query, timeout=timeout, cancelled=cancelled
        )

    def pyramid(
        self,
        src: Path,
        dst_dir: Path,
        name: str,
        *,
        crop: tuple[int, int, int, int] | None = None,
        timeout: float | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Path:
        """Write the pyramid TIFF of the image ``src`` (of its part ``crop``, x, y, w, h) as
        ``dst_dir/name`` (see :func:`jobengine.imaging.ptif.make_pyramid`); the same faults as
        :meth:`convert`."""
        params: dict[str, Any] = {} if crop is None else {"crop": list(crop)}
        fields = {"params": params}
        (path,) = self._run(
            "pyramid", src, dst_dir, name, fields, timeout=timeout, cancelled=cancelled
        )
        return path

    def trim_box(
        self,
        src: Path,
        *,
        mode: str = "size",
        corner: str = "UpperLeft",
        fuzz: float = 0.0,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Measure the image ``src`` for an upload crop (see
        :func:`jobengine.imaging.trim.trim_box`): ``{"width", "height", "alpha", "box"}``; the
        same faults as :meth:`convert`."""
        params = {"mode": mode, "corner": corner, "fuzz": fuzz}
        with tempfile.TemporaryDirectory(prefix="jobengine-trim-") as scratch:
            (path,) = self._run(
                "trim_box", src, Path(scratch), "box.json", {"params": params}, timeout=timeout
            )
            answer: dict[str, Any] = json.loads(path.read_bytes())
        return answer

    def rip_pdf(
        self,
        src: Path,
        dst_dir: Path,
        base_name: str,
        *,
        dpi: float = 150.0,
        gray: bool = False,
        first_page_only: bool = False,
        timeout: float | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[Path]:
        """Write the PDF's pages as ``dst_dir/<base_name>-<n>.jpg`` (see
        :func:`jobengine.imaging.rip.rip_pdf`); ``timeout`` applies to each page, and
        ``Limits.max_pdf_seconds`` to the whole document. ``cancelled`` as for :meth:`convert`."""
        params = {"dpi": dpi, "gray": gray, "first_page_only": first_page_only}
        return self._run(
            "rip_pdf",
            src,
            dst_dir,
            base_name,
            {"params": params},
            timeout=timeout,
            whole=self.limits.max_pdf_seconds,
            cancelled=cancelled,
        )

    def _run(
        self,
        op: str,
        src: Path,
        dst_dir: Path,
        base_name: str,
        fields: dict[str, Any],
        *,
        timeout: float | None,
        whole: float | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[Path]:
        """Send operation ``op`` to an idle worker and wait for its files: ``timeout`` seconds
        per file, ``whole`` seconds in all (from when a worker takes it)."""
        if self._closed:
            raise ConversionFailed("the conversion pool is closed")
        worker = self._acquire()
        keep: _Worker | None = worker
        token = secrets.token_hex(8)
        written: list[str] = []
        request = {
            "id": token,
            "op": op,
            "src": str(Path(src).absolute()),
            "dst_dir": str(Path(dst_dir).absolute()),
            "base_name": base_name,
            "token": token,
            **fields,
        }
        limit = timeout or self.limits.timeout_seconds
        until = math.inf if whole is None else time.monotonic() + whole
        try:
            reply = worker.call(request, limit, written, until=until, cancelled=cancelled)
        except _Timeout as exc:
            keep = None
            self._discard(worker, Path(dst_dir), token, written)
            if exc.whole:
                raise ConversionTimeout(f"the document took longer than {whole:g} s") from None
            raise ConversionTimeout(f"the conversion took longer than {limit:g} s") from None
        except _Cancelled:
            keep = None
            self._discard(worker, Path(dst_dir), token, written)
            raise RunStopped("stopped while converting") from None
        except (_Died, OSError, ValueError):
            keep = None
            reason = worker.last_error()
            self._discard(worker, Path(dst_dir), token, written)
            raise ConversionFailed(f"the conversion worker crashed ({reason})") from None
        except BaseException:  # anything else while it works (a time limit, an exit): a busy
            keep = None  # worker never goes back to the pool, where it would answer the next call
            self._discard(worker, Path(dst_dir), token, written)
            raise
        finally:
            self._idle.put(self._retire(keep))
        return self._result(reply)

    def _acquire(self) -> _Worker:
        """An idle worker, started if its slot is empty (the slot is given back on failure)."""
        worker = self._idle.get()
        if worker is not None:
            return worker
        try:
            return _Worker(self.limits, self.engine, self.extra_env)
        except BaseException:
            self._idle.put(None)
            raise

    def _discard(self, worker: _Worker, dst_dir: Path, token: str, written: list[str]) -> None:
        """Kill ``worker`` and remove what its interrupted conversion wrote."""
        worker.kill()
        for path in written:
            Path(path).unlink(missing_ok=True)
        for tmp in dst_dir.glob(f".jobengine-{token}-*.part"):
            tmp.unlink(missing_ok=True)

    def _retire(self, worker: _Worker | None) -> _Worker | None:
        if worker is not None and (
            self._closed or worker.tasks >= self.limits.max_tasks_per_worker
        ):
            worker.close()
            return None
        return worker

    @staticmethod
    def _result(reply: dict[str, Any]) -> list[Path]:
        if reply.get("event") == "done":
            return [Path(p) for p in reply["paths"]]
        fault: type[IpsFault] = FAULTS_BY_NAME.get(str(reply.get("type")), ConversionFailed)
        raise fault(str(reply.get("reason") or "conversion failed"))

    def worker_pids(self) -> list[int]:
        """Process ids of the idle, running workers (for monitoring and the benchmark)."""
        workers: list[_Worker | None] = []
        while True:
            try:
                workers.append(self._idle.get_nowait())
            except queue.Empty:
                break
        for worker in reversed(workers):
            self._idle.put(worker)
        return [w.proc.pid for w in workers if w is not None and w.proc.poll() is None]

    def close(self) -> None:
        """Stop every worker (waits for conversions in progress)."""
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self.pid:
            return  # a forked copy: the workers belong to the parent
        for _ in range(self.size):
            worker = self._idle.get()
            if worker is not None:
                worker.close()

    def __enter__(self) -> ConversionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_default: dict[str, ConversionPool] = {}  # "pool" -> the process-wide pool
_default_lock = threading.Lock()


def default_pool() -> ConversionPool:
    """The process-wide pool, created on first use: ``JOBENGINE_IMAGING_WORKERS`` workers
    (default 1: under Celery each prefork child gets its own pool) and ``Limits.from_env()``."""
    with _default_lock:
        pool = _default.get("pool")
        if pool is None or pool.pid != os.getpid():
            size = int(os.environ.get("JOBENGINE_IMAGING_WORKERS") or 1)
            pool = _default["pool"] = ConversionPool(size, Limits.from_env())
            atexit.register(pool.close)
        return pool


def convert(
    src: Path,
    dst_dir: Path,
    req: ImageRequest,
    base_name: str,
    *,
    timeout: float | None = None,
    cancelled: Callable[[], bool] | None = None,
    durable: bool = True,
) -> list[Path]:
    """``default_pool().convert(...)``."""
    pool = default_pool()
    return pool.convert(
        src, dst_dir, req, base_name, timeout=timeout, cancelled=cancelled, durable=durable
    )


def pyramid(
    src: Path,
    dst_dir: Path,
    name: str,
    *,
    crop: tuple[int, int, int, int] | None = None,
    timeout: float | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Path:
    """``default_pool().pyramid(...)``."""
    pool = default_pool()
    return pool.pyramid(src, dst_dir, name, crop=crop, timeout=timeout, cancelled=cancelled)


def trim_box(
    src: Path,
    *,
    mode: str = "size",
    corner: str = "UpperLeft",
    fuzz: float = 0.0,
    timeout: float | None = None,
) -> dict[str, Any]:
    """``default_pool().trim_box(...)``."""
    return default_pool().trim_box(src, mode=mode, corner=corner, fuzz=fuzz, timeout=timeout)


def rip_pdf(
    src: Path,
    dst_dir: Path,
    base_name: str,
    *,
    dpi: float = 150.0,
    gray: bool = False,
    first_page_only: bool = False,
    timeout: float | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> list[Path]:
    """``default_pool().rip_pdf(...)``."""
    return default_pool().rip_pdf(
        src,
        dst_dir,
        base_name,
        dpi=dpi,
        gray=gray,
        first_page_only=first_page_only,
        timeout=timeout,
        cancelled=cancelled,
    )


def shutdown_default_pool() -> None:
    """Close the process-wide pool (a later call to :func:`default_pool` makes a new one)."""
    with _default_lock:
        pool = _default.pop("pool", None)
        if pool is not None:
            pool.close()
