"""Which ``Host`` headers the service answers (DNS rebinding): a page on another site can make
a browser resolve its own name to 127.0.0.1 and then read a local ``serve`` as its own origin;
the ``Host`` header still carries that site's name, so refusing unknown names stops it.

The matching is Starlette's ``TrustedHostMiddleware`` (exact names, ``*.example.com``, ``*``);
``AllowedHosts`` only turns its plain-text refusal into the API's JSON error (400 ``bad_host``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response

LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
WILDCARD_BINDS = ("0.0.0.0", "::", "")  # the wildcard binds: every interface
_PASSED = "ctir_es.host_allowed"


def host_pattern(host: str) -> str:
    """A host as the ``Host`` header spells it: IPv6 literals in brackets, names lower-case."""
    host = host.strip().lower()
    if host.startswith("[") or host == "*":
        return host
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def allowed_hosts_for(bind: str, setting: str | None) -> list[str] | None:
    """The ``Host`` names a server bound to ``bind`` answers: the setting (comma-separated,
    ``*`` for any) when given; else the local names plus the bind host. None (any host) for a
    wildcard bind without the setting: its names are not known here (the caller says so)."""
    if setting is not None and setting.strip():
        return [host_pattern(h) for h in setting.split(",") if h.strip()]
    if bind.strip() in WILDCARD_BINDS:
        return None
    return list(dict.fromkeys([*LOCAL_HOSTS, host_pattern(bind)]))


class AllowedHosts:
    """``TrustedHostMiddleware`` with the API's error shape: a request whose ``Host`` is not
    allowed gets 400 ``bad_host`` (JSON) and never reaches the app."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.check = TrustedHostMiddleware(self._passed, allowed_hosts=list(allowed_hosts), www_redirect=False)

    async def _passed(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_PASSED] = True
        await self.app(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_if_passed(message: Message) -> None:  # drops the plain-text refusal
            if scope.get(_PASSED):
                await send(message)

        await self.check(scope, receive, send_if_passed)
        if not scope.get(_PASSED):
            host = Headers(scope=scope).get("host", "")[:200]
            await error_response(400, "bad_host", (
                f"this server does not answer to the Host {host!r}: open it by a name it serves, or add the "
                "name to the server's allowed_hosts (CTIR_ES_ALLOWED_HOSTS)"))(scope, receive, send)
