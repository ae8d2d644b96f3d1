"""Fetching http(s) URLs for UploadUrlsJob, hardened against server-side request forgery.

A source URL is hostile. :func:`fetch` streams its body and holds to these rules:

* **Addresses.** The host is resolved once (with a timeout). Every address it resolves to must be
  public: loopback, private, link-local, site-local, multicast, reserved, unspecified and other
  non-global addresses are refused, IPv4 and IPv6 alike, including IPv4 addresses carried
  inside IPv6 ones (IPv4-mapped ``::ffff:a.b.c.d``, 6to4, Teredo, NAT64).
  ``JOBENGINE_UPLOAD_ALLOWED_HOSTS`` lists exceptions (:class:`jobengine.net.policy.AddressPolicy`):
  host names, ``host:port``, IP addresses or CIDRs.
* **No second lookup.** The connection goes to the vetted address itself, with the URL's host
  in the ``Host`` header and, for https, in SNI and in the certificate check: a DNS answer that
  changes between the check and the connection (DNS rebinding) changes nothing.
* **Redirects.** At most :data:`MAX_REDIRECTS`, http and https only; each target is checked
  again the same way. Credentials of the URL (``user:password@``, sent as HTTP Basic) are never
  sent to a redirect target.
* **Limits** (:class:`FetchLimits`): a connect timeout, a timeout on each read, a deadline for
  the whole file (redirects included) and a maximum size, enforced while streaming whatever
  ``Content-Length`` says; a body shorter than its ``Content-Length`` is an error.
* **Logs.** Failures are :class:`FetchError` with a reason meant for a job log row; URLs in it
  are shown by :func:`display_url`, without credentials or query string.

No proxy from the environment is used: the connection is always the vetted one.

:func:`post` sends one small POST (completion callbacks, :mod:`jobengine.notices.callbacks`) under
the same address, pinning, TLS, credential and log rules, and these of its own: no redirect is
followed (a 3xx is returned as it is, for the caller to count as a failure), the whole exchange
has the limits' deadline, and at most ``max_bytes`` of the answer's body are read and dropped.
A failure tells whether the request may have reached the server (:attr:`PostError.sent`).
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

from jobengine.net.policy import AddressPolicy, IPAddress

__all__ = [
    "MAX_REDIRECTS",
    "AddressRefused",
    "FetchError",
    "FetchLimits",
    "PostError",
    "PostResponse",
    "check_url",
    "display_url",
    "fetch",
    "post",
]

MAX_REDIRECTS = 5
CHUNK = 64 * 1024
USER_AGENT = "jobengine-upload/1"
POST_USER_AGENT = "jobengine-callback/1"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class FetchError(Exception):
    """A URL that could not be fetched; ``reason`` is written for a job log row."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class AddressRefused(FetchError):
    """The URL's host resolves to an address the policy refuses: nothing was connected to."""


class PostError(FetchError):
    """A POST that got no answer. ``sent`` is False when the request certainly did not reach
    the server (bad URL, refused address, no connection, TLS failure), True when it may have
    (the connection broke, or the answer did not come, after the request was sent)."""

    def __init__(self, reason: str, *, sent: bool, refused: bool = False) -> None:
        super().__init__(reason)
        self.sent = sent
        self.refused = refused  # the policy refused the address


@dataclass(frozen=True)
class PostResponse:
    """The status line of a POST's answer (any status: no redirect is followed)."""

    status: int
    reason: str


@dataclass(frozen=True)
class FetchLimits:
    """Timeouts and the size limit of one file."""

    max_bytes: int = 512 * 1024 * 1024
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    deadline: float = 600.0

    @classmethod
    def from_settings(cls, settings: Any) -> FetchLimits:
        """The limits of :class:`jobengine.settings.Settings`; the deadline stays inside the
        task's time limit, so a slow file fails its own item before Celery kills the task."""
        deadline = min(settings.upload_deadline, settings.task_time_limit * 0.8)
        return cls(
            max_bytes=settings.upload_max_bytes,
            connect_timeout=settings.upload_connect_timeout,
            read_timeout=settings.upload_read_timeout,
            deadline=deadline,
        )


def display_url(url: str) -> str:
    """A URL fit for a log: no ``user:password@`` and no query string (signed URLs carry
    secrets there)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(an invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    query = "?..." if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


def _without_userinfo(url: str) -> str:
    """A redirect target without ``user:password@``: credentials go to the URL given only."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # ASCII (IDNA) host name or IP literal, without brackets
    port: int
    path: str  # the request target: path and query
    authorization: str | None


def _target(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"{display_url(url)} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError(f"only http and https URLs are fetched; got {scheme or 'none'}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise FetchError(f"{display_url(url)} names no host")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise FetchError(f"{display_url(url)} has an invalid host name") from None
    if port is None:
        port = 443 if scheme == "https" else 80
    # the request target, percent-encoded where the URL was not (no spaces or controls)
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    authorization = None
    if parts.username is not None:
        secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(secret.encode()).decode("ascii")
    return _Target(scheme, host, port, path, authorization)


def check_url(url: str) -> None:
    """FetchError when ``url`` could never be fetched or posted to: not http(s), no host, an
    invalid host name or port (port 0 included). The address policy is applied when connecting,
    not here: what a name resolves to may change."""
    target = _target(url)
    if target.port == 0:
        raise FetchError(f"{display_url(url)} names port 0")
    if not _HOST_NAME.fullmatch(target.host):
        try:
            ipaddress.ip_address(target.host)
        except ValueError:
            raise FetchError(f"{display_url(url)} has an invalid host name") from None


def _getaddrinfo(host: str, port: int, timeout: float) -> list[Any]:
    """``socket.getaddrinfo`` bounded by ``timeout``: it runs in a daemon thread, which a
    resolver that never answers leaves behind without holding up the item or the process."""
    answer: list[Any] = []

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:
            answer.append(exc)

    thread = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    thread.start()
    thread.join(timeout)
    if not answer:
        raise FetchError(f"looking up {host} took longer than {timeout:.0f} s")
    if isinstance(answer[0], Exception):
        raise FetchError(f"cannot resolve {host}: {answer[0]}")
    infos: list[Any] = answer[0]
    return infos


def _resolve(host: str, port: int, timeout: float) -> list[IPAddress]:
    """The addresses of ``host`` (one lookup, bounded by ``timeout``)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = _getaddrinfo(host, port, max(timeout, 0.001))
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchError(f"cannot resolve {host}: no addresses")
    return addresses


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a vetted address, whatever the host name resolves to now."""

    def __init__(self, host: str, port: int, address: IPAddress, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self.address), self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to a vetted address; SNI and the certificate check use the URL's
    host name."""

    def __init__(
        self, host: str, port: int, address: IPAddress, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.address = address
        self.tls = context

    def connect(self) -> None:
        sock = socket.create_connection((str(self.address), self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class _Clock:
    def __init__(self, limits: FetchLimits) -> None:
        self.limits = limits
        self.end = time.monotonic() + limits.deadline

    def left(self, cap: float) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise self.overdue()
        return min(cap, left)

    def overdue(self) -> FetchError:
        return FetchError(f"took longer than {self.limits.deadline:.0f} s")

    def timed_out(self, url: str) -> FetchError:
        """The error of a socket timeout: the deadline's, once it has passed."""
        if time.monotonic() >= self.end:
            return self.overdue()
        return FetchError(f"{display_url(url)} timed out")


def _connect(
    target: _Target, policy: AddressPolicy, clock: _Clock, tls: ssl.SSLContext | None
) -> http.client.HTTPConnection:
    """A connection to the first vetted address of the target's host that answers."""
    timeout = clock.left(clock.limits.connect_timeout)
    addresses = _resolve(target.host, target.port, timeout)
    for address in addresses:  # every address must be allowed: a mixed answer is refused
        why = policy.refusal(target.host, target.port, address)
        if why is not None:
            raise AddressRefused(f"refused to connect to {target.host} ({address}): {why} address")
    failure: OSError | None = None
    for address in addresses:
        timeout = clock.left(clock.limits.connect_timeout)
        conn: http.client.HTTPConnection
        if target.scheme == "https":
            context = tls or ssl.create_default_context()
            conn = _PinnedHTTPSConnection(target.host, target.port, address, timeout, context)
        else:
            conn = _PinnedHTTPConnection(target.host, target.port, address, timeout)
        try:
            conn.connect()
            return conn
        except ssl.SSLError:
            conn.close()
            raise
        except OSError as exc:
            conn.close()
            failure = exc
    raise FetchError(f"cannot connect to {target.host}: {failure}")


def _request(
    target: _Target, policy: AddressPolicy, clock: _Clock, tls: ssl.SSLContext | None
) -> tuple[http.client.HTTPConnection, socket.socket, http.client.HTTPResponse]:
    """The connection, its socket (the response reads from it even once http.client has let go
    of it, for a ``Connection: close`` answer) and the response."""
    conn = _connect(target, policy, clock, tls)
    try:
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": "*/*",
            "Accept-Encoding": "identity",
            "Connection": "close",
        }
        if target.authorization:
            headers["Authorization"] = target.authorization
        sock = conn.sock
        assert isinstance(sock, socket.socket)
        sock.settimeout(clock.left(clock.limits.read_timeout))
        conn.request("GET", target.path, headers=headers)
        return conn, sock, conn.getresponse()
    except BaseException:
        conn.close()
        raise


def _body(
    sock: socket.socket, response: http.client.HTTPResponse, clock: _Clock
) -> Iterator[bytes]:
    limits = clock.limits
    declared = response.length  # None when chunked or not given
    if declared is not None and declared > limits.max_bytes:
        raise FetchError(
            f"the file is {declared} bytes (Content-Length); at most {limits.max_bytes} allowed"
        )
    total = 0
    while True:
        sock.settimeout(clock.left(limits.read_timeout))
        chunk = response.read1(CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > limits.max_bytes:
            raise FetchError(f"the file is larger than {limits.max_bytes} bytes")
        clock.left(limits.read_timeout)  # the deadline holds however the bytes trickle in
        yield chunk
    if declared is not None and total < declared:
        raise FetchError(f"the transfer was cut off after {total} of {declared} bytes")
    if total == 0:
        raise FetchError("the server sent an empty file")


def fetch(
    url: str,
    *,
    policy: AddressPolicy,
    limits: FetchLimits,
    tls: ssl.SSLContext | None = None,
) -> Iterator[bytes]:
    """The body of ``url``, in chunks, following up to :data:`MAX_REDIRECTS` redirects.

    Raises :class:`FetchError` (while iterating) for a refused address, a failed connection or
    TLS check, a non-2xx answer, a redirect loop, a timeout, a body over the size limit or cut
    short. ``tls`` replaces the default certificate check (tests use their own CA).
    """
    clock = _Clock(limits)
    current = url
    for hop in range(MAX_REDIRECTS + 1):
        target = _target(current)
        try:
            conn, sock, response = _request(target, policy, clock, tls)
        except TimeoutError:
            raise clock.timed_out(current) from None
        except ssl.SSLCertVerificationError as exc:
            raise FetchError(f"TLS check of {target.host} failed: {exc.verify_message}") from None
        except (ssl.SSLError, http.client.HTTPException, OSError) as exc:
            raise FetchError(f"cannot fetch {display_url(current)}: {exc}") from None
        try:
            status = response.status
            if status in _REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise FetchError(f"HTTP {status} from {display_url(current)} without Location")
                if hop == MAX_REDIRECTS:
                    raise FetchError(f"more than {MAX_REDIRECTS} redirects")
                current = _without_userinfo(urljoin(current, location.strip()))
                continue
            if not 200 <= status < 300:
                said = f"HTTP {status} {response.reason or ''}".strip()
                raise FetchError(f"{said} from {display_url(current)}")
            try:
                yield from _body(sock, response, clock)
            except TimeoutError:
                raise clock.timed_out(current) from None
            except (http.client.HTTPException, OSError) as exc:
                raise FetchError(
                    f"the transfer from {display_url(current)} failed: {exc!r}"
                ) from None
            return
        finally:
            response.close()
            conn.close()
    raise AssertionError("unreachable")  # pragma: no cover


def _drain(
    sock: socket.socket, response: http.client.HTTPResponse, clock: _Clock, limit: int
) -> None:
    """Read at most ``limit`` bytes of an answer's body and drop them (errors do not matter:
    the status is known)."""
    left = limit
    try:
        while left > 0:
            sock.settimeout(clock.left(clock.limits.read_timeout))
            chunk = response.read1(left)
            if not chunk:
                break
            left -= len(chunk)
    except (FetchError, http.client.HTTPException, OSError):
        pass


def post(
    url: str,
    body: bytes,
    *,
    policy: AddressPolicy,
    limits: FetchLimits,
    content_type: str = "application/json",
    tls: ssl.SSLContext | None = None,
) -> PostResponse:
    """POST ``body`` to ``url`` once; returns the answer's status, whatever it is.

    The address rules, the pinned connection and the TLS check are :func:`fetch`'s;
    ``user:password@`` goes as HTTP Basic. No redirect is followed. ``limits``: connect and read
    timeouts, a deadline for the whole exchange, and ``max_bytes`` of the answer's body read at
    most (then dropped). Raises :class:`PostError` when no answer came, saying whether the
    request may have reached the server.
    """
    clock = _Clock(limits)
    try:
        check_url(url)
        target = _target(url)
    except FetchError as exc:
        raise PostError(exc.reason, sent=False) from None
    try:
        conn = _connect(target, policy, clock, tls)
    except AddressRefused as exc:
        raise PostError(exc.reason, sent=False, refused=True) from None
    except FetchError as exc:
        raise PostError(exc.reason, sent=False) from None
    except ssl.SSLCertVerificationError as exc:
        reason = f"TLS check of {target.host} failed: {exc.verify_message}"
        raise PostError(reason, sent=False) from None
    except (ssl.SSLError, OSError) as exc:
        raise PostError(f"cannot connect to {display_url(url)}: {exc}", sent=False) from None
    try:
        headers = {
            "User-Agent": POST_USER_AGENT,
            "Content-Type": content_type,
            "Accept": "*/*",
            "Connection": "close",
        }
        if target.authorization:
            headers["Authorization"] = target.authorization
        sock = conn.sock
        assert isinstance(sock, socket.socket)
        try:
            sock.settimeout(clock.left(limits.read_timeout))
        except FetchError as exc:  # the deadline passed while connecting: nothing sent
            raise PostError(exc.reason, sent=False) from None
        try:
            conn.request("POST", target.path, body=body, headers=headers)
            sock.settimeout(clock.left(limits.read_timeout))
            response = conn.getresponse()
        except FetchError as exc:  # the deadline, once the request went
            raise PostError(exc.reason, sent=True) from None
        except TimeoutError:
            raise PostError(f"no answer from {display_url(url)} in time", sent=True) from None
        except (http.client.HTTPException, OSError) as exc:
            reason = f"the exchange with {display_url(url)} broke off: {exc!r}"
            raise PostError(reason, sent=True) from None
        try:
            _drain(sock, response, clock, limits.max_bytes)
            return PostResponse(response.status, (response.reason or "").strip()[:200])
        finally:
            response.close()
    finally:
        conn.close()
