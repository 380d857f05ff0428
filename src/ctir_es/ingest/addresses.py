"""Which network addresses an image fetch may reach, and a ``requests`` adapter that enforces it.

Why: image URLs come from the catalogue, an untrusted supplier's file (and from clients of the
HTTP service). Fetched naively, ``http://169.254.169.254/...`` reads the cloud metadata
service and ``http://10.0.0.5/admin`` an intranet host: server-side request forgery. So by
default an image fetch reaches only globally routable unicast addresses.

How: ``GuardedAdapter`` resolves the host once, checks the address, and connects to *that*
address (the URL is rewritten to the IP; ``Host`` and, for HTTPS, SNI and the certificate check
keep the original name), so a DNS answer that changes between check and connect (rebinding)
cannot move the request. Every redirect hop goes through the adapter again, so a redirect to
an internal address is refused too. Hostnames spelled as numbers (``2130706433``, ``0177.1``,
``0x7f.0.0.1``) resolve to the address they denote before the check.

The lookup is bounded too: ``getaddrinfo`` cannot be interrupted and a DNS server that does not
answer held it for as long as the resolver's own retries (tens of seconds), past the image's
deadline. So a name is resolved in a daemon thread that the request waits for until the
thread's ``watchdog.deadline`` (or ``LOOKUP_TIMEOUT`` outside one); at most ``MAX_LOOKUPS`` run at
once, stuck ones included, so a dead DNS server cannot pile up threads.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from .watchdog import POOL_CLASSES, time_left

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (address, port) -> why it is refused, or None when allowed
AddressPolicy = Callable[[IPAddress, int], "str | None"]
Resolver = Callable[[str, int], list[IPAddress]]

_HEX = re.compile(r"0[xX][0-9a-fA-F]*")
_OCTAL = re.compile(r"0[0-7]*")
_DECIMAL = re.compile(r"[1-9][0-9]*")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: internal to a provider
LOOKUP_TIMEOUT = 10.0  # seconds for a name lookup outside an image deadline
MAX_LOOKUPS = 16  # name lookups in flight at once, stuck ones included
_lookups = threading.BoundedSemaphore(MAX_LOOKUPS)


class AddressRefused(Exception):
    """The URL's host is (or resolves to) an address image fetching may not reach."""

    def __init__(self, reason: str, url: str) -> None:
        super().__init__(f"{reason}: {url[:200]}")
        self.reason = reason  # e.g. "private address 10.0.0.5"


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address (``"loopback address 127.0.0.1"``), or None.

    IPv6 addresses that embed an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, 6to4, Teredo,
    NAT64) are judged by the embedded address too.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        kind = _kind(address.ipv4_mapped)  # the socket reaches the IPv4 address itself
    else:
        inner = _embedded_v4(address) if isinstance(address, ipaddress.IPv6Address) else []
        kind = next((k for k in map(_kind, inner) if k is not None), None) or _kind(address)
    return None if kind is None else f"{kind} address {address}"


def _kind(a: IPAddress) -> str | None:
    if a.is_unspecified:
        return "unspecified"
    if a.is_loopback:
        return "loopback"
    if a.is_link_local:  # 169.254.169.254, the cloud metadata address, is here
        return "link-local"
    if a.is_multicast:
        return "multicast"
    if a.is_reserved:  # 240.0.0.0/4, IPv6 ranges not yet assigned
        return "reserved"
    if a.is_private or (isinstance(a, ipaddress.IPv4Address) and a in _SHARED):
        return "private"  # RFC 1918, unique-local, and the stdlib's other special-purpose ranges
    if not a.is_global:  # documentation, benchmarking and other special-purpose ranges
        return "reserved"
    return None


def _embedded_v4(a: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    inner: list[ipaddress.IPv4Address] = []
    if a.sixtofour is not None:
        inner.append(a.sixtofour)
    if a.teredo is not None:
        inner.extend(a.teredo)
    if a in _NAT64:
        inner.append(ipaddress.IPv4Address(int(a) & 0xFFFFFFFF))
    return inner


def default_policy(address: IPAddress, port: int) -> str | None:
    """The default: only public unicast addresses, any port."""
    return refusal(address)


def allow_all(address: IPAddress, port: int) -> str | None:
    """The opt-in for intranet catalogues (``--allow-private-images``)."""
    return None


def numeric_host(host: str) -> IPAddress | None:
    """``host`` as an address when it is one, in any spelling ``inet_aton`` accepts: dotted
    quad, fewer parts (``127.1``), decimal (``2130706433``), octal (``0177.0.0.1``) or hex
    (``0x7f.1``) parts; or an IPv6 literal, brackets allowed. None for a name."""
    text = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:  # inet_aton's parts: 0x hex, 0 octal, else decimal (ASCII digits only)
        if _HEX.fullmatch(part):
            values.append(int(part[2:] or "0", 16))
        elif _OCTAL.fullmatch(part):
            values.append(int(part, 8))
        elif _DECIMAL.fullmatch(part):
            values.append(int(part, 10))
        else:
            return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = last
    for i, v in enumerate(head):
        number += v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` resolves to (numeric spellings without asking DNS)."""
    literal = numeric_host(host)
    if literal is not None:
        return [literal]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    return seen


def bounded_lookup(resolver: Resolver, host: str, port: int, timeout: float) -> list[IPAddress]:
    """``resolver(host, port)``, given up after ``timeout`` seconds (``TimeoutError``); the
    lookup itself runs on in its thread until the system resolver gives up."""
    if not _lookups.acquire(timeout=timeout):
        raise TimeoutError(f"{MAX_LOOKUPS} name lookups are already waiting for DNS")
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["addresses"] = resolver(host, port)
        except Exception as exc:  # noqa: BLE001 - re-raised in the waiting request
            outcome["error"] = exc
        finally:
            _lookups.release()
            done.set()

    threading.Thread(target=run, name="ctir-dns", daemon=True).start()
    if not done.wait(timeout):
        raise TimeoutError(f"no DNS answer within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return list(outcome["addresses"])


class GuardedAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that resolves each request's host once, refuses it by ``policy``
    (``AddressRefused``), and connects to the address it checked.

    Mounted for ``http://`` and ``https://`` on a session, it sees every redirect hop too.
    """

    def __init__(
        self,
        policy: AddressPolicy = default_policy,
        resolver: Resolver = resolve,
        **kwargs: Any,
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        # connections that hand their socket to the thread's deadline (ingest/watchdog.py)
        self.poolmanager.pool_classes_by_scheme = dict(POOL_CLASSES)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS managers bring connection classes of their own
            manager.pool_classes_by_scheme = dict(POOL_CLASSES)
        return manager

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        url = request.url or ""
        parts = urlsplit(url)
        host = parts.hostname
        if not host:
            raise requests.exceptions.InvalidURL(f"no host in {url[:200]}")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:  # a port out of range or not a number
            raise requests.exceptions.InvalidURL(f"{exc}: {url[:200]}") from None
        address = self._pick(host, port, url)
        pinned = request.copy()
        literal = f"[{address}]" if address.version == 6 else str(address)
        netloc = literal if parts.port is None else f"{literal}:{parts.port}"
        pinned.url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        pinned.headers["Host"] = parts.netloc.rsplit("@", 1)[-1]
        if parts.scheme == "https":
            pinned._ctir_server_name = host  # type: ignore[attr-defined]
        response = super().send(pinned, **kwargs)
        response.url = url  # redirects resolve against the URL asked for, not the IP
        response.request = request
        return response

    def _pick(self, host: str, port: int, url: str) -> IPAddress:
        try:
            if numeric_host(host) is not None:  # no DNS to wait for
                addresses = self.resolver(host, port)
            else:
                left = time_left()
                addresses = bounded_lookup(self.resolver, host, port, LOOKUP_TIMEOUT if left is None else left)
        except (OSError, UnicodeError) as exc:  # socket.gaierror and TimeoutError are OSErrors
            raise requests.ConnectionError(f"cannot resolve {host[:100]}: {exc}") from None
        refused: str | None = None
        for address in addresses:
            why = self.policy(address, port)
            if why is None:
                return address
            refused = refused or why
        if refused is None:
            raise requests.ConnectionError(f"{host[:100]} resolves to no address")
        raise AddressRefused(refused, url)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        name = getattr(request, "_ctir_server_name", None)
        if name:  # TLS to the pinned IP still sends and checks the original name
            pool_kwargs["server_hostname"] = name
            pool_kwargs["assert_hostname"] = name
        return host_params, pool_kwargs


def guarded_session(
    policy: AddressPolicy = default_policy,
    resolver: Resolver = resolve,
    headers: Mapping[str, str] | None = None,
    max_redirects: int = 5,
) -> requests.Session:
    """A ``requests.Session`` whose every request and redirect passes ``GuardedAdapter``."""
    session = requests.Session()
    adapter = GuardedAdapter(policy=policy, resolver=resolver)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.max_redirects = max_redirects
    if headers:
        session.headers.update(headers)
    return session
