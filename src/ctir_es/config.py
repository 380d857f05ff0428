"""Settings: defaults that work offline, overridden by a TOML config file, then env, then flags.

Config file: ``$CTIR_ES_CONFIG`` or ``<user config dir>/ctir-es/config.toml``, e.g.::

    store = "/data/shop.db"
    text_model = "all-mpnet-base-v2"
    clip_architecture = "ViT-B-32"
    clip_weights = "/models/open_clip_vit_b32.safetensors"

    [elasticsearch]          # secrets belong here or in env, never on the command line
    url = "https://es.internal:9200"
    api_key = "..."
    ca_certs = "/etc/ssl/es-ca.pem"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir, user_config_dir, user_data_dir

from .errors import ConfigError
from .products import has_surrogate

APP = "ctir-es"

# env var -> setting name (secrets for Elasticsearch are read by EsConnection.from_env)
ENV_VARS: dict[str, str] = {
    "CTIR_ES_STORE": "store",
    "CTIR_ES_URL": "es_url",
    "CTIR_ES_INDEX": "es_index",
    "CTIR_ES_TEXT_MODEL": "text_model",
    "CTIR_ES_CLIP_MODEL": "clip_architecture",
    "CTIR_ES_CLIP_WEIGHTS": "clip_weights",
    "CTIR_ES_CACHE_DIR": "cache_dir",
    "CTIR_ES_VECTOR_INDEX": "vector_index",
    "CTIR_ES_FUSION_LOCATION": "fusion_location",
}


def default_store_path() -> Path:
    return Path(user_data_dir(APP)) / "products.db"


@dataclass(frozen=True)
class Settings:
    store: Path = field(default_factory=default_store_path)
    es_url: str | None = None
    es_index: str = "products"
    text_model: str = "all-MiniLM-L6-v2"
    clip_architecture: str = "ViT-B-32"
    clip_weights: str | None = "laion2b_s34b_b79k"  # "none" disables image vectors
    cache_dir: Path = field(default_factory=lambda: Path(user_cache_dir(APP)))
    batch_size: int = 64
    image_workers: int = 4
    image_timeout: float = 10.0
    # Embedded store kNN: "exact" (NumPy), or with the [ann] extra "sq8" / "ivf" / "hnsw"
    # (faiss candidates rescored exactly; see docs/benchmarks.md for recall and speed).
    vector_index: str = "exact"
    # Where hybrid results are fused: "client" (ctir_es.ranking, every store, with a per-source
    # breakdown), "server" (an Elasticsearch rrf/linear retriever; an error where the cluster
    # cannot) or "auto" (server where the cluster can, else client with a one-line notice).
    fusion_location: str = "client"
    es_options: Mapping[str, Any] = field(default_factory=dict)  # [elasticsearch] table of the file

    @property
    def image_cache(self) -> Path:
        return self.cache_dir / "images"

    @property
    def download_cache(self) -> Path:
        return self.cache_dir / "downloads"

    @property
    def use_images(self) -> bool:
        return bool(self.clip_weights) and str(self.clip_weights).lower() not in ("none", "off", "")

    def with_overrides(self, **overrides: Any) -> Settings:
        """Apply flags; ``None`` means "not given" and keeps the current value."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **_coerce(given))


_PATHS = {"store", "cache_dir"}
_INTS = {"batch_size", "image_workers"}
_FLOATS = {"image_timeout"}
_STRINGS = {"es_url", "es_index", "text_model", "clip_architecture", "clip_weights", "vector_index",
            "fusion_location"}
FUSION_LOCATIONS: tuple[str, ...] = ("client", "server", "auto")
# Inclusive ranges of the numeric settings: 0 or -1 would be a silent no-op or a hang.
_RANGES: dict[str, tuple[float, float]] = {
    "batch_size": (1, 4096),
    "image_workers": (1, 64),
    "image_timeout": (0.1, 600),
}


def _coerce(values: Mapping[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields(Settings)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting {key!r}; known: {', '.join(sorted(known))}")
        try:
            if key in _PATHS:
                value = Path(value).expanduser()
            elif key in _INTS:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError(value)
                value = int(value)
            elif key in _FLOATS:
                if isinstance(value, bool):
                    raise ValueError(value)
                value = float(value)
            elif key in _STRINGS and value is not None and not isinstance(value, str):
                raise TypeError(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"setting {key!r} has a bad value: {value!r}") from None
        if isinstance(value, str) and has_surrogate(value):
            raise ConfigError(f"setting {key!r} is not valid UTF-8")
        if key == "fusion_location" and value not in FUSION_LOCATIONS:
            raise ConfigError(
                f"setting 'fusion_location' must be one of {', '.join(FUSION_LOCATIONS)}, got {value!r}"
            )
        if key in _RANGES:
            low, high = _RANGES[key]
            if not low <= value <= high:  # NaN fails both comparisons
                raise ConfigError(f"setting {key!r} must be between {low:g} and {high:g}, got {value!r}")
        out[key] = value
    return out


def config_path(env: Mapping[str, str]) -> Path:
    return Path(env.get("CTIR_ES_CONFIG") or Path(user_config_dir(APP)) / "config.toml")


def load_settings(env: Mapping[str, str] | None = None, config_file: Path | None = None) -> Settings:
    env = os.environ if env is None else env
    path = config_file or config_path(env)
    values: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid UTF-8 (byte {exc.start}): save it as UTF-8") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        es = data.pop("elasticsearch", {})
        if not isinstance(es, dict):
            raise ConfigError(f"{path}: [elasticsearch] must be a table")
        if "url" in es:
            values["es_url"] = es["url"]
        if "index" in es:
            values["es_index"] = es["index"]
        values["es_options"] = {k: v for k, v in es.items() if k not in ("url", "index")}
        values.update(data)
    for var, name in ENV_VARS.items():
        if env.get(var):
            values[name] = env[var]
    return Settings(**_coerce(values))
