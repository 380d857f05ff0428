"""A bounded raw-socket server on 127.0.0.1 for tests of hostile HTTP peers (dripped headers or
bodies): ``handle(conn, stop)`` writes whatever bytes it likes; ``stop`` is set at teardown so
every handler loop ends, and each connection runs on its own daemon thread."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def raw_server(handle: Callable[[socket.socket, threading.Event], None]) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` while the block runs; ``handle`` owns each connection."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                handle(conn, stop)
            except OSError:
                pass  # the client gave up (its deadline): nothing to report

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        srv.close()
