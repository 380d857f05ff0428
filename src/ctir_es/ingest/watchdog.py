"""A deadline over a whole HTTP exchange: connect, TLS, status line, headers, redirects and body.

A socket timeout bounds one read only. A server that drips its response headers a byte or a
line at a time, each within the timeout, kept ``http.client`` parsing them for as long as it
liked (14 s against an image deadline of 6 s in issue 24), because the loader checked its
deadline only while reading the body.

``deadline(when)`` marks the exchanges this thread runs until ``when`` (a ``time.monotonic()``
value). The connections of ``WatchedHTTPConnectionPool`` / ``WatchedHTTPSConnectionPool``
(``GuardedAdapter`` mounts them) hand their socket to that mark as soon as it exists and before
each response is read; when the deadline passes, a timer shuts the socket down, so the blocked
read returns at once and the request fails (``requests.ConnectionError``). The caller tells a
missed deadline from other failures by the clock.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()


class Deadline:
    """One thread's deadline: at ``when`` the socket attached last is shut down."""

    def __init__(self, when: float) -> None:
        self.when = when
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, when - time.monotonic()), self._expire)
        self._timer.daemon = True

    def attach(self, sock: socket.socket | None) -> None:
        """Watch ``sock`` from now on (cut at once when the deadline already passed)."""
        with self._lock:
            self._sock = sock
            if self.expired:
                _cut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            _cut(self._sock)

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sock = None


def _cut(sock: socket.socket | None) -> None:
    """Shut the socket down under a blocked ``recv`` (the base method: an ``SSLSocket``'s own
    would drop its TLS state under the reading thread)."""
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


@contextlib.contextmanager
def deadline(when: float) -> Iterator[Deadline]:
    """Bound every exchange this thread runs through watched connections until ``when``."""
    mark = Deadline(when)
    previous = getattr(_current, "mark", None)
    _current.mark = mark
    mark.start()
    try:
        yield mark
    finally:
        mark.cancel()
        _current.mark = previous


def time_left() -> float | None:
    """Seconds until this thread's deadline (0 once passed), or None outside ``deadline``."""
    mark: Deadline | None = getattr(_current, "mark", None)
    return None if mark is None else max(0.0, mark.when - time.monotonic())


def _attach(sock: Any) -> None:
    mark: Deadline | None = getattr(_current, "mark", None)
    if mark is not None and isinstance(sock, socket.socket):
        mark.attach(sock)


class WatchedHTTPConnection(HTTPConnection):
    """Hands its socket to this thread's ``deadline`` when made and before each response."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _attach(sock)  # before TLS: a dripped handshake is cut too
        return sock

    def getresponse(self) -> Any:  # the urllib3 HTTPResponse
        _attach(self.sock)  # a kept-alive connection made under an earlier deadline
        return super().getresponse()


class WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _attach(sock)
        return sock

    def getresponse(self) -> Any:
        _attach(self.sock)
        return super().getresponse()


class WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection


POOL_CLASSES: dict[str, type[HTTPConnectionPool]] = {
    "http": WatchedHTTPConnectionPool, "https": WatchedHTTPSConnectionPool}
