"""Import the shipped Kibana saved objects through Kibana's saved-objects API.

``POST {kibana}/api/saved_objects/_import?overwrite=true`` (or ``/s/{space}/api/...``),
``multipart/form-data`` with the NDJSON as the ``file`` part and the ``kbn-xsrf`` header;
the answer is ``{"success", "successCount", "errors": [...]}``
(kibana/8.15/saved-objects-api-import.html). ``overwrite`` makes the import idempotent.
``import_request`` builds that request as data; ``import_saved_objects`` sends it.
``compatibilityMode`` is optional on every version: Kibana uses it only to create legacy URL
aliases for objects whose ids change on import (``createSavedObjects``), which ours never do.

Settings come from env (or the caller): ``CTIR_KIBANA_URL`` (default http://localhost:5601),
``CTIR_KIBANA_API_KEY`` or ``CTIR_KIBANA_USERNAME``/``CTIR_KIBANA_PASSWORD`` - falling back to
the Elasticsearch credentials (``CTIR_ES_*``), which are the same users in a default stack -
``CTIR_KIBANA_CA_CERTS`` and ``CTIR_KIBANA_VERIFY_CERTS``. Secrets are redacted from errors.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from ..errors import ConfigError, StoreError
from ..store.elasticsearch.connection import REDACTED, parse_bool, redact_url

DEFAULT_KIBANA_URL = "http://localhost:5601"


@dataclass(frozen=True, slots=True)
class KibanaConnection:
    url: str = DEFAULT_KIBANA_URL
    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    timeout: float = 30.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"CTIR_KIBANA_URL must be an http(s) URL, got {redact_url(self.url)!r}")
        if parts.username or parts.password:
            raise ConfigError("put Kibana credentials in CTIR_KIBANA_USERNAME/PASSWORD, not in the URL")
        if self.api_key and (self.username or self.password):
            raise ConfigError("give either CTIR_KIBANA_API_KEY or a username/password, not both")
        if bool(self.username) != bool(self.password):
            raise ConfigError("Kibana needs both a username and a password")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> KibanaConnection:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value and value.strip() else None

        values: dict[str, Any] = {"url": get("CTIR_KIBANA_URL") or DEFAULT_KIBANA_URL}
        if get("CTIR_KIBANA_API_KEY") or get("CTIR_KIBANA_USERNAME"):
            values.update(
                api_key=get("CTIR_KIBANA_API_KEY"),
                username=get("CTIR_KIBANA_USERNAME"),
                password=get("CTIR_KIBANA_PASSWORD"),
            )
        else:  # same users as Elasticsearch in a default stack
            values.update(
                api_key=get("CTIR_ES_API_KEY"),
                username=get("CTIR_ES_USERNAME"),
                password=get("CTIR_ES_PASSWORD"),
            )
        values["ca_certs"] = get("CTIR_KIBANA_CA_CERTS")
        if (raw := get("CTIR_KIBANA_VERIFY_CERTS")) is not None:
            values["verify_certs"] = parse_bool("CTIR_KIBANA_VERIFY_CERTS", raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def headers(self) -> dict[str, str]:
        out = {"kbn-xsrf": "true"}
        if self.api_key:
            key = self.api_key
            if ":" in key:
                key = base64.b64encode(key.encode()).decode()
            out["Authorization"] = f"ApiKey {key}"
        elif self.username:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            out["Authorization"] = f"Basic {token}"
        return out

    def scrub(self, text: str) -> str:
        secrets = [self.api_key, self.password]
        if self.api_key and ":" in self.api_key:
            secrets.append(self.api_key.partition(":")[2])
        for secret in secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, REDACTED)
        auth = self.headers().get("Authorization")
        if auth:
            text = text.replace(auth.split(" ", 1)[1], REDACTED)
        return text

    def __repr__(self) -> str:
        return (
            f"KibanaConnection(url={self.url!r}, api_key={REDACTED if self.api_key else None!r}, "
            f"username={self.username!r}, password={REDACTED if self.password else None!r})"
        )


def import_url(conn: KibanaConnection, space: str | None, *, compatibility_mode: bool) -> str:
    base = conn.url.rstrip("/")
    prefix = f"/s/{space}" if space and space != "default" else ""
    query = "overwrite=true" + ("&compatibilityMode=true" if compatibility_mode else "")
    return f"{base}{prefix}/api/saved_objects/_import?{query}"


IMPORT_FILENAME = "ctir-es.ndjson"


def import_request(
    conn: KibanaConnection,
    ndjson: str,
    *,
    space: str | None = None,
    compatibility_mode: bool = False,
) -> requests.PreparedRequest:
    """The import request, prepared but not sent: ``POST .../api/saved_objects/_import?overwrite=true``,
    the ``kbn-xsrf`` header, the NDJSON as the multipart ``file`` part."""
    return requests.Request(
        "POST",
        import_url(conn, space, compatibility_mode=compatibility_mode),
        headers=conn.headers(),
        files={"file": (IMPORT_FILENAME, ndjson.encode(), "application/ndjson")},
    ).prepare()


def import_saved_objects(
    conn: KibanaConnection,
    ndjson: str,
    *,
    space: str | None = None,
    compatibility_mode: bool = False,
) -> dict[str, Any]:
    """Import ``ndjson``; returns Kibana's answer, raises ``StoreError`` when anything failed."""
    request = import_request(conn, ndjson, space=space, compatibility_mode=compatibility_mode)
    verify: bool | str = conn.ca_certs or conn.verify_certs
    try:
        with requests.Session() as session:  # env proxies / CA bundle as requests.post applies them
            settings = session.merge_environment_settings(request.url or "", {}, None, verify, None)
            response = session.send(request, timeout=conn.timeout, **settings)
    except requests.RequestException as exc:
        raise StoreError(
            f"cannot reach Kibana at {conn.url}: {conn.scrub(type(exc).__name__ + ': ' + str(exc))[:300]}; "
            "is it running? (docker compose -f docker/docker-compose.yml up -d, or set CTIR_KIBANA_URL)"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text[:300]}
    if response.status_code == 401:
        raise StoreError(
            f"Kibana at {conn.url} rejected the credentials (401); set CTIR_KIBANA_USERNAME and "
            "CTIR_KIBANA_PASSWORD or CTIR_KIBANA_API_KEY (or the CTIR_ES_* ones)"
        )
    if response.status_code >= 300:
        raise StoreError(
            f"Kibana saved-objects import failed ({response.status_code}): "
            f"{conn.scrub(str(body.get('message', body)))[:300]}"
        )
    if not body.get("success", False):
        errors = [
            f"{e.get('type')}/{e.get('id')}: {(e.get('error') or {}).get('type', 'error')}"
            for e in body.get("errors") or []
        ]
        raise StoreError(
            f"Kibana imported {body.get('successCount', 0)} object(s) but failed on "
            f"{len(errors)}: {'; '.join(errors[:5])}"
        )
    return dict(body)
