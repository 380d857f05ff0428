"""Connection settings and the client: where Elasticsearch is, how to authenticate, TLS.

Credentials come only from the environment (``CTIR_ES_*``) or the ``[elasticsearch]`` table of
the config file, never from command-line flags. Three ways to authenticate, one at a time:
an API key (``CTIR_ES_API_KEY``, ``"id:key"`` or the encoded form), basic auth
(``CTIR_ES_USERNAME`` + ``CTIR_ES_PASSWORD``, or ``https://user:pw@host`` in the URL, moved out
of it), or a bearer token (``CTIR_ES_BEARER_TOKEN``, e.g. from a token service or OIDC).
TLS: certificates are verified by default (``CTIR_ES_VERIFY_CERTS=true``), against the system
store, a CA file (``CTIR_ES_CA_CERTS``) or a pinned certificate fingerprint
(``CTIR_ES_SSL_FINGERPRINT``, the SHA-256 that Elasticsearch prints on first start).
Secrets never appear in ``repr``/``str``, in error messages (``EsConnection.scrub``) or in log
records of the client libraries (``install_log_redaction``).

Client/server versions: elasticsearch-py 9.x asks for REST API compatibility 9, which 8.x
servers reject ("Accept version must be either version 8 or 7"). By default the store asks
for compatibility 8 instead (``EsConnection.api_compat``), which 8.x serves natively and 9.x
serves through its N-1 REST compatibility, so one client works against both.
(reference/8.15/rest-api-compatibility.html; elasticsearch-py ``bearer_auth``,
``ssl_assert_fingerprint``: https://elasticsearch-py.readthedocs.io/en/v8.15.0/api/elasticsearch.html)
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import elasticsearch
from elasticsearch import Elasticsearch

from ...errors import ConfigError
from ...vocabulary import OFF, ON

log = logging.getLogger(__name__)

DEFAULT_URL = "http://localhost:9200"
DEFAULT_INDEX = "products"
META_INDEX_SUFFIX = "-ctir-meta"
ENV_PREFIX = "CTIR_ES_"
REDACTED = "***"

_USERINFO = re.compile(r"(?<=//)[^/@]*@")
_BAD_INDEX_CHARS = set('\\/*?"<>| ,#:')
_FINGERPRINT = re.compile(r"^(?:[0-9A-Fa-f]{2}:?){32}$")

# ---------------------------------------------------------------- connection settings


def redact_url(url: str) -> str:
    """``https://user:pw@host`` -> ``https://***@host`` (for messages and repr)."""
    return _USERINFO.sub(f"{REDACTED}@", url)


def parse_bool(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ON:
        return True
    if text in OFF:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _check_index_name(name: str) -> None:
    """Elasticsearch's index-name rules, checked before any request is made."""
    if (
        not name
        or name != name.lower()
        or name[0] in "-_+"
        or name in (".", "..")
        or set(name) & _BAD_INDEX_CHARS
        or len(name.encode()) > 255 - len(META_INDEX_SUFFIX)
    ):
        raise ConfigError(
            f"bad index name {name!r}: use lowercase letters, digits, '-', '_' or '.', "
            f"not starting with '-', '_' or '+' (set CTIR_ES_INDEX)"
        )


@dataclass(frozen=True, slots=True)
class EsConnection:
    """Where and how to reach Elasticsearch. Secrets never appear in ``repr``/``str``.

    Credentials may be given as ``api_key`` (``"id:key"`` or the encoded form), as
    ``username``/``password`` (or embedded in ``url``, ``https://user:pw@host:9200``: they are
    moved out of the URL so it can be shown and logged), or as a ``bearer_token``; one kind only.
    TLS: ``verify_certs`` (on by default) against the system CAs, ``ca_certs`` (a PEM file)
    or ``ssl_fingerprint`` (SHA-256 of the server certificate, ``AB:CD:...`` or plain hex).
    ``api_compat`` is the REST API compatibility major version to request (8 works with
    8.x and 9.x servers; None sends what the installed client sends).
    """

    url: str = DEFAULT_URL
    index: str = DEFAULT_INDEX
    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    request_timeout: float = 30.0
    api_compat: int | None = 8
    bearer_token: str | None = None
    ssl_fingerprint: str | None = None

    def __post_init__(self) -> None:
        # several nodes of one cluster: "http://a:9200,http://b:9200" (the client fails over)
        urls = [self._clean_url(part) for part in self.url.split(",") if part.strip()]
        if not urls:
            raise ConfigError(f"CTIR_ES_URL must be an http(s) URL such as {DEFAULT_URL}, got ''")
        object.__setattr__(self, "url", ",".join(urls))
        _check_index_name(self.index)
        kinds = [
            name
            for name, given in (
                ("an API key (CTIR_ES_API_KEY)", self.api_key),
                ("a username/password", self.username or self.password),
                ("a bearer token (CTIR_ES_BEARER_TOKEN)", self.bearer_token),
            )
            if given
        ]
        if len(kinds) > 1:
            raise ConfigError(f"give one kind of credentials, not both {' and '.join(kinds)}")
        if self.ssl_fingerprint is not None:
            if not _FINGERPRINT.match(self.ssl_fingerprint.strip()):
                raise ConfigError(
                    "CTIR_ES_SSL_FINGERPRINT must be a SHA-256 fingerprint: 64 hex digits, "
                    "optionally in pairs separated by ':' (as Elasticsearch prints it on first start)"
                )
            if self.ca_certs:
                raise ConfigError("give either CTIR_ES_CA_CERTS or CTIR_ES_SSL_FINGERPRINT, not both")
        if not self.verify_certs and "https:" in self.url:
            log.warning(
                "TLS certificate verification is OFF for %s (CTIR_ES_VERIFY_CERTS=false): "
                "use CTIR_ES_CA_CERTS or CTIR_ES_SSL_FINGERPRINT instead",
                redact_url(self.url),
            )
        if self.username and self.password is None:
            raise ConfigError("CTIR_ES_USERNAME is set but CTIR_ES_PASSWORD is not")
        if self.password and not self.username:
            raise ConfigError("CTIR_ES_PASSWORD is set but CTIR_ES_USERNAME is not")
        if not self.request_timeout or self.request_timeout <= 0:
            raise ConfigError(f"request_timeout must be > 0 seconds, got {self.request_timeout!r}")

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, prefix: str = ENV_PREFIX, **overrides: Any
    ) -> EsConnection:
        """Settings from ``CTIR_ES_*`` variables; keyword overrides (not None) win.

        Reads CTIR_ES_URL, CTIR_ES_INDEX, CTIR_ES_API_KEY, CTIR_ES_USERNAME,
        CTIR_ES_PASSWORD, CTIR_ES_BEARER_TOKEN, CTIR_ES_CA_CERTS, CTIR_ES_SSL_FINGERPRINT,
        CTIR_ES_VERIFY_CERTS, CTIR_ES_REQUEST_TIMEOUT and CTIR_ES_API_COMPAT ("8", "9" or "none").
        ``prefix`` names another engine's variables (OpenSearch: ``CTIR_ES_OS_URL``, ...).
        """
        env = os.environ if env is None else env
        fields = set(cls.__dataclass_fields__)
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ConfigError(
                f"unknown Elasticsearch setting(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
            )
        values: dict[str, Any] = {}
        for name in (
            "url",
            "index",
            "api_key",
            "username",
            "password",
            "bearer_token",
            "ca_certs",
            "ssl_fingerprint",
        ):
            raw = env.get(prefix + name.upper())
            if raw is not None and raw.strip():
                values[name] = raw.strip()
        if (raw := env.get(f"{prefix}VERIFY_CERTS")) is not None and raw.strip():
            values["verify_certs"] = parse_bool(f"{prefix}VERIFY_CERTS", raw)
        if (raw := env.get(f"{prefix}REQUEST_TIMEOUT")) is not None and raw.strip():
            try:
                values["request_timeout"] = float(raw)
            except ValueError:
                raise ConfigError(
                    f"{prefix}REQUEST_TIMEOUT must be a number of seconds, got {raw!r}"
                ) from None
        if (raw := env.get(f"{prefix}API_COMPAT")) is not None and raw.strip():
            text = raw.strip().lower()
            if text in ("none", "off"):
                values["api_compat"] = None
            elif text.isdigit():
                values["api_compat"] = int(text)
            else:
                raise ConfigError(
                    f"CTIR_ES_API_COMPAT must be a major version such as 8, or none; got {raw!r}"
                )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def meta_index(self) -> str:
        return self.index + META_INDEX_SUFFIX

    def _clean_url(self, raw: str) -> str:
        """One node URL, validated; credentials in it move to ``username``/``password``."""
        parts = urlsplit(raw.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"CTIR_ES_URL must be an http(s) URL such as {DEFAULT_URL}, got {redact_url(raw)!r}"
            )
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"bad port in CTIR_ES_URL {redact_url(raw)!r}") from None
        if parts.username is None and parts.password is None:
            return raw.strip()
        if self.username is None and parts.username:
            object.__setattr__(self, "username", unquote(parts.username))
        if self.password is None and parts.password is not None:
            object.__setattr__(self, "password", unquote(parts.password))
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = f"{host}:{port}" if port else host
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def urls(self) -> list[str]:
        """The node URLs (one, or several of one cluster)."""
        return self.url.split(",")

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)

    def secrets(self) -> list[str]:
        """Every secret and the forms it travels in (an ``id:key`` API key is sent base64'd)."""
        import base64

        out = [s for s in (self.api_key, self.password, self.bearer_token) if s]
        if self.api_key and ":" in self.api_key:
            out.append(base64.b64encode(self.api_key.encode()).decode())
            out.append(self.api_key.partition(":")[2])
        if self.username and self.password:
            out.append(base64.b64encode(f"{self.username}:{self.password}".encode()).decode())
        return [s for s in out if len(s) >= 4]

    def scrub(self, text: str) -> str:
        """Remove every secret (and URL userinfo) from a message before it is shown."""
        text = redact_url(text)
        for secret in self.secrets():
            text = text.replace(secret, REDACTED)
        return text

    def with_index(self, index: str) -> EsConnection:
        return replace(self, index=index)

    def __repr__(self) -> str:
        return (
            f"EsConnection(url={self.redacted_url!r}, index={self.index!r}, "
            f"api_key={REDACTED if self.api_key else None!r}, username={self.username!r}, "
            f"password={REDACTED if self.password else None!r}, "
            f"bearer_token={REDACTED if self.bearer_token else None!r}, ca_certs={self.ca_certs!r}, "
            f"ssl_fingerprint={self.ssl_fingerprint!r}, "
            f"verify_certs={self.verify_certs!r}, request_timeout={self.request_timeout!r}, "
            f"api_compat={self.api_compat!r})"
        )

    __str__ = __repr__


# ---------------------------------------------------------------- client


_JSON_MIMETYPE = re.compile(r"application/(json|x-ndjson)")


def compat_mimetype(value: str, major: int) -> str:
    """``application/json`` -> ``application/vnd.elasticsearch+json; compatible-with=8``."""
    return _JSON_MIMETYPE.sub(rf"application/vnd.elasticsearch+\1; compatible-with={major}", value)


def client_major() -> int:
    return int(elasticsearch.__versionstr__.split(".")[0])


@functools.cache
def compat_client_class(major: int | None) -> type[Elasticsearch]:
    """An ``Elasticsearch`` subclass that requests REST compatibility ``major``.

    The client rewrites plain ``application/json`` to its own major version; a header that
    already names a compatible version is left alone, so rewriting it first wins.
    ``options()`` (used by the bulk helpers) rebuilds ``type(self)``, keeping the subclass.
    """
    if major is None or major >= client_major():
        return Elasticsearch
    version: int = major

    class CompatElasticsearch(Elasticsearch):
        def perform_request(
            self, method: str, path: str, *, headers: Any = None, **kwargs: Any
        ) -> Any:
            if headers:
                headers = {
                    k: compat_mimetype(v, version) if k.lower() in ("accept", "content-type") else v
                    for k, v in headers.items()
                }
            return super().perform_request(method, path, headers=headers, **kwargs)

    CompatElasticsearch.__name__ = CompatElasticsearch.__qualname__ = f"Elasticsearch{major}Compat"
    return CompatElasticsearch


def client_kwargs(conn: EsConnection) -> dict[str, Any]:
    """Keyword arguments for ``Elasticsearch(...)`` (holds secrets: never log it)."""
    kwargs: dict[str, Any] = {
        "hosts": conn.urls,
        "request_timeout": conn.request_timeout,
        "retry_on_timeout": True,
        "max_retries": 3,
    }
    if conn.api_key:
        key_id, sep, key = conn.api_key.partition(":")
        kwargs["api_key"] = (key_id, key) if sep else conn.api_key
    elif conn.username:
        kwargs["basic_auth"] = (conn.username, conn.password or "")
    elif conn.bearer_token:
        kwargs["bearer_auth"] = conn.bearer_token
    if any(url.startswith("https:") for url in conn.urls):
        kwargs["verify_certs"] = conn.verify_certs
        if conn.ca_certs:
            kwargs["ca_certs"] = conn.ca_certs
        if conn.ssl_fingerprint:
            kwargs["ssl_assert_fingerprint"] = conn.ssl_fingerprint.strip().replace(":", "").lower()
    return kwargs


class RedactingFilter(logging.Filter):
    """Replaces the secrets of one connection in every record that passes (message and args)."""

    def __init__(self, conn: EsConnection) -> None:
        super().__init__()
        self.conn = conn

    def filter(self, record: logging.LogRecord) -> bool:
        if self.conn.secrets() or "@" in str(record.msg):
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format string is not ours to fix
                return True
            scrubbed = self.conn.scrub(message)
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
        return True


# Loggers of the client stack that may print URLs, headers or bodies (at DEBUG).
# (A logger's filters only see records logged on that very logger, so children are listed too.)
CLIENT_LOGGERS: tuple[str, ...] = (
    "elastic_transport",
    "elastic_transport.transport",
    "elastic_transport.node",
    "elastic_transport.node_pool",
    "elasticsearch",
    "elasticsearch.trace",
    "urllib3",
    "urllib3.connectionpool",
    "ctir_es",
)


def install_log_redaction(conn: EsConnection) -> RedactingFilter:
    """Attach a ``RedactingFilter`` for ``conn`` to the client libraries' loggers and to the
    handlers of the root logger (records of child loggers skip the parents' filters)."""
    flt = RedactingFilter(conn)
    for name in CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) and f.conn == conn for f in logger.filters):
            logger.addFilter(flt)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) and f.conn == conn for f in handler.filters):
            handler.addFilter(flt)
    return flt


def build_client(conn: EsConnection) -> Elasticsearch:
    """The client for ``conn``; constructing it does no I/O."""
    if conn.secrets():
        install_log_redaction(conn)
    return compat_client_class(conn.api_compat)(**client_kwargs(conn))


def _body(response: Any) -> Any:
    return getattr(response, "body", response)


