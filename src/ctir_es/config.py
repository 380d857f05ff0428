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

    [values]                 # the types of typed values at ingest (else declared / inferred)
    price = {kind = "number", unit = "INR"}
    brand = "keyword"
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir, user_config_dir, user_data_dir

from .errors import BadValue, ConfigError
from .products import has_surrogate
from .values import ValueSpec, value_name
from .vocabulary import DISABLED, OFF, ON

APP = "ctir-es"
FUSION_LOCATIONS: tuple[str, ...] = ("client", "server", "auto")
ENCODER_BACKENDS: tuple[str, ...] = ("onnx", "torch")
LEXICAL_ENGINES: tuple[str, ...] = ("fts5", "tantivy")


def default_store_path() -> Path:
    return Path(user_data_dir(APP)) / "products.db"


def default_cache_dir() -> Path:
    return Path(user_cache_dir(APP))


@dataclass(frozen=True)
class Settings:
    """Every knob of ctir-es (the table ``SETTINGS`` documents each: env var, kind, range)."""

    store: Path = field(default_factory=default_store_path)
    es_url: str | None = None
    es_index: str = "products"
    text_model: str = "all-MiniLM-L6-v2"
    clip_architecture: str = "ViT-B-32"
    clip_weights: str | None = "laion2b_s34b_b79k"  # "none" disables image vectors
    clip_ita: str | None = None  # an exported CLIP-ITA model: ingest adds the clip_ita vector
    cache_dir: Path = field(default_factory=default_cache_dir)
    models_dir: Path | None = None  # None: <cache_dir>/models
    backend: str = "onnx"
    onnx_threads: int | None = None
    onnx_device: str = "auto"
    onnx_spin: bool = False
    allow_downloads: bool = False
    batch_size: int = 64
    image_workers: int = 4
    image_timeout: float = 10.0
    allow_private_images: bool = False  # fetch images from loopback/private/link-local addresses
    vector_index: str = "exact"
    lexical_engine: str | None = None  # None: the store's own (fts5 for new embedded stores)
    fusion_location: str = "client"
    allowed_hosts: str | None = None  # serve: Host names answered, comma-separated (None: local + bind host)
    es_options: Mapping[str, Any] = field(default_factory=dict)  # [elasticsearch] table of the file
    os_url: str | None = None
    os_options: Mapping[str, Any] = field(default_factory=dict)  # [opensearch] table of the file
    value_types: Mapping[str, ValueSpec] = field(default_factory=dict)  # [values] table: ingest's type overrides

    @property
    def image_cache(self) -> Path:
        return self.cache_dir / "images"

    @property
    def download_cache(self) -> Path:
        return self.cache_dir / "downloads"

    @property
    def model_dir(self) -> Path:
        return self.models_dir or self.cache_dir / "models"

    @property
    def use_images(self) -> bool:
        return enabled(self.clip_weights) is not None

    @property
    def engine(self) -> str:
        """``opensearch``, ``elasticsearch`` or ``embedded``: which store the URLs name. Both
        URLs set is a ``ConfigError`` (which one was meant cannot be guessed)."""
        if self.es_url and self.os_url:
            raise ConfigError(
                "both an Elasticsearch URL (--es-url, CTIR_ES_URL or [elasticsearch] url) and an "
                "OpenSearch URL (--os-url, CTIR_ES_OS_URL or [opensearch] url) are set: unset one"
            )
        return "opensearch" if self.os_url else "elasticsearch" if self.es_url else "embedded"

    @property
    def server_url(self) -> str | None:
        """The URL of the search server in use (None: the embedded store)."""
        engine = self.engine
        return self.os_url if engine == "opensearch" else self.es_url if engine == "elasticsearch" else None

    def with_overrides(self, **overrides: Any) -> Settings:
        """Apply flags; ``None`` means "not given" and keeps the current value."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **_coerce(given))


def enabled(value: object) -> str | None:
    """A setting naming an optional component (model, weights), or None when it is unset or
    spelled as "off" (``none``, ``off``, ``false``, ``no``, empty)."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text.lower() in DISABLED else text


@dataclass(frozen=True)
class Knob:
    """One setting: its config-file key (= the ``Settings`` field), env var, kind and limits."""

    name: str
    env: str | None
    kind: str  # path | str | int | float | bool
    doc: str
    choices: tuple[str, ...] = ()
    limits: tuple[float, float] | None = None  # inclusive; 0 or -1 would be a silent no-op or a hang
    optional: bool = False  # may be unset (None)


# The one table of settings: flag > env > config file > default. docs/configuration.md is
# generated from it (tests/test_config.py checks the two agree).
SETTINGS: tuple[Knob, ...] = (
    Knob("store", "CTIR_ES_STORE", "path", "the embedded store file (when no Elasticsearch URL is set)"),
    Knob("es_url", "CTIR_ES_URL", "str", "Elasticsearch URL(s), comma-separated; unset = embedded store "
         "(credentials: CTIR_ES_API_KEY or CTIR_ES_USERNAME/CTIR_ES_PASSWORD, or [elasticsearch])",
         optional=True),
    Knob("es_index", "CTIR_ES_INDEX", "str", "the Elasticsearch or OpenSearch index (alias) name"),
    Knob("os_url", "CTIR_ES_OS_URL", "str", "OpenSearch URL(s), comma-separated, instead of an Elasticsearch URL "
         "(credentials: CTIR_ES_OS_USERNAME/CTIR_ES_OS_PASSWORD or CTIR_ES_OS_BEARER_TOKEN, or [opensearch])",
         optional=True),
    Knob("text_model", "CTIR_ES_TEXT_MODEL", "str", "text encoder: a known name, a local model dir, or none"),
    Knob("clip_architecture", "CTIR_ES_CLIP_MODEL", "str", "CLIP architecture (open_clip name or config file)"),
    Knob("clip_weights", "CTIR_ES_CLIP_WEIGHTS", "str", "CLIP weights: a tag, a file, or none for text-only",
         optional=True),
    Knob("clip_ita", "CTIR_ES_CLIP_ITA", "str", "an exported CLIP-ITA model (name or dir) ingest adds as the "
         "clip_ita vector", optional=True),
    Knob("cache_dir", "CTIR_ES_CACHE_DIR", "path", "downloads, images and model caches"),
    Knob("models_dir", "CTIR_ES_MODELS_DIR", "path", "where exported ONNX models are installed "
         "(unset: <cache_dir>/models)", optional=True),
    Knob("backend", "CTIR_ES_BACKEND", "str", "encoder runtime: onnx (exported models, no torch) or torch (the reference)",
         choices=ENCODER_BACKENDS),
    Knob("onnx_threads", "CTIR_ES_ONNX_THREADS", "int", "onnxruntime intra-op threads (unset: all cores)",
         limits=(1, 256), optional=True),
    Knob("onnx_device", "CTIR_ES_ONNX_DEVICE", "str", "where ONNX encoders run (flag --device): auto (CUDA when "
         "onnxruntime offers it, else the CPU), cpu, or cuda (without CUDA: the CPU, with one notice; docs/models.md)",
         choices=("auto", "cpu", "cuda")),
    Knob("onnx_spin", "CTIR_ES_ONNX_SPIN", "bool", "let onnxruntime threads spin between batches (faster "
         "bulk encoding, busier cores)"),
    Knob("allow_downloads", "CTIR_ES_ALLOW_DOWNLOADS", "bool", "let torch encoders download weights "
         "(off: offline, local files only)"),
    Knob("batch_size", None, "int", "products encoded per batch", limits=(1, 4096)),
    Knob("image_workers", None, "int", "parallel image downloads", limits=(1, 64)),
    Knob("image_timeout", None, "float", "seconds per image fetch", limits=(0.1, 600)),
    Knob("allow_private_images", "CTIR_ES_ALLOW_PRIVATE_IMAGES", "bool", "fetch image URLs whose host is "
         "(or resolves to, or redirects to) a loopback, private, link-local or other non-public address: "
         "an intranet catalogue (off: refused, counted as image missing 'refused')"),
    Knob("vector_index", "CTIR_ES_VECTOR_INDEX", "str", "embedded kNN: exact, or with the [ann] extra "
         "sq8, ivf or hnsw (docs/benchmarks.md)", choices=("exact", "sq8", "ivf", "hnsw")),
    Knob("lexical_engine", "CTIR_ES_LEXICAL_ENGINE", "str", "BM25 engine of NEW embedded stores: tantivy "
         "(unset: the default; an index beside the file, FTS5's BM25F scoring through the native scorer, about "
         "10x faster BM25 at 100k products; fts5 where the native module is not installed) or fts5 (SQLite FTS5 "
         "inside the file); an existing store keeps its own",
         choices=LEXICAL_ENGINES, optional=True),
    Knob("fusion_location", "CTIR_ES_FUSION_LOCATION", "str", "client (every store, per-source breakdown), "
         "server (an Elasticsearch retriever, or OpenSearch's hybrid query where neural-search is installed) or auto", choices=FUSION_LOCATIONS),
    Knob("allowed_hosts", "CTIR_ES_ALLOWED_HOSTS", "str", "serve: the Host header names it answers, "
         "comma-separated (*.example.com, or * for any: behind a proxy that checks it); others get 400 "
         "(DNS rebinding). Unset: 127.0.0.1, localhost, [::1] and the --host it binds (any for 0.0.0.0)",
         optional=True),
)
KNOBS: Mapping[str, Knob] = {k.name: k for k in SETTINGS}
# env var -> setting name (secrets for Elasticsearch are read by EsConnection.from_env)
ENV_VARS: dict[str, str] = {k.env: k.name for k in SETTINGS if k.env}


def _coerce_one(knob: Knob, value: Any) -> Any:
    key = knob.name
    if knob.optional and isinstance(value, str) and value.strip().lower() in DISABLED:
        return None
    try:
        if knob.kind == "path":
            value = Path(value).expanduser()
        elif knob.kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            value = int(value)
        elif knob.kind == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            value = float(value)
        elif knob.kind == "bool":
            if isinstance(value, str):
                word = value.strip().lower()
                value = True if word in ON else False if word in OFF | DISABLED else value
            if not isinstance(value, bool):
                raise ValueError(value)
        elif not isinstance(value, str):
            raise TypeError(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"setting {key!r} has a bad value: {value!r}") from None
    if isinstance(value, str) and has_surrogate(value):
        raise ConfigError(f"setting {key!r} is not valid UTF-8")
    if knob.choices and value not in knob.choices:
        raise ConfigError(f"setting {key!r} must be one of {', '.join(knob.choices)}, got {value!r}")
    if knob.limits:
        low, high = knob.limits
        if not low <= value <= high:  # NaN fails both comparisons
            raise ConfigError(f"setting {key!r} must be between {low:g} and {high:g}, got {value!r}")
    return value


def _coerce(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("es_options", "os_options"):
            out[key] = value
            continue
        if key == "value_types":
            out[key] = value if all(isinstance(v, ValueSpec) for v in value.values()) else config_value_types(value)
            continue
        knob = KNOBS.get(key)
        if knob is None:
            raise ConfigError(f"unknown setting {key!r}; known: {', '.join(sorted(KNOBS))}")
        out[key] = None if value is None else _coerce_one(knob, value)
    return out


def config_path(env: Mapping[str, str]) -> Path:
    return Path(env.get("CTIR_ES_CONFIG") or Path(user_config_dir(APP)) / "config.toml")


def _read_config(path: Path) -> str | None:
    """The config file's text (None when there is none). What is not a regular file (a FIFO, a
    device, a directory) is refused by its ``stat``, and the file is opened without blocking,
    so no command can hang on it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"config file {path} is not a regular file (a FIFO, a device or a directory): "
                          "point CTIR_ES_CONFIG at a TOML file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the stat
            raise ConfigError(f"config file {path} is not a regular file: point CTIR_ES_CONFIG at a TOML file")
        raw = fh.read()
    return raw.decode("utf-8")


def _file_values(path: Path) -> dict[str, Any]:
    try:
        text = _read_config(path)
        if text is None:
            return {}
        data = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid UTF-8 (byte {exc.start}): save it as UTF-8") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    values: dict[str, Any] = {}
    es = data.pop("elasticsearch", {})
    if not isinstance(es, dict):
        raise ConfigError(f"{path}: [elasticsearch] must be a table")
    if "url" in es:
        values["es_url"] = es["url"]
    if "index" in es:
        values["es_index"] = es["index"]
    values["es_options"] = {k: v for k, v in es.items() if k not in ("url", "index")}
    opensearch = data.pop("opensearch", {})
    if not isinstance(opensearch, dict):
        raise ConfigError(f"{path}: [opensearch] must be a table")
    if "url" in opensearch:
        values["os_url"] = opensearch["url"]
    # the index name is one setting for both engines; [opensearch] may name its own
    values["os_options"] = {k: v for k, v in opensearch.items() if k != "url"}
    if "values" in data:
        values["value_types"] = config_value_types(data.pop("values"), str(path))
    values.update(data)
    return values


def config_value_types(table: Any, where: str = "the config") -> dict[str, ValueSpec]:
    """The ``[values]`` table of a config file (``name = "keyword"`` or ``name = {kind = "number",
    unit = "INR"}``) as specs by normalised name (docs/shop-search.md); a ``ConfigError`` names
    the bad entry."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: [values] must be a table of name = kind or name = {{kind = ..., unit = ...}}")
    out: dict[str, ValueSpec] = {}
    for raw, spec in table.items():
        try:
            name = value_name(raw)
        except BadValue as exc:
            raise ConfigError(f"{where}: [values] name {str(raw)[:60]!r}: {exc}") from None
        try:
            parsed = ValueSpec.from_json(spec)
        except ConfigError as exc:
            raise ConfigError(f"{where}: [values] {name}: {exc}") from None
        if name in out and out[name] != parsed:
            raise ConfigError(f"{where}: [values] names {name!r} twice with different types")
        out[name] = parsed
    return out


def _env_values(env: Mapping[str, str]) -> dict[str, str]:
    return {name: env[var] for var, name in ENV_VARS.items() if env.get(var)}


def load_settings(env: Mapping[str, str] | None = None, config_file: Path | None = None) -> Settings:
    """Defaults, then the config file, then the environment (flags come last, from the CLI)."""
    env = os.environ if env is None else env
    values = _file_values(config_file or config_path(env))
    values.update(_env_values(env))
    return Settings(**_coerce(values))


def setting_origins(env: Mapping[str, str] | None = None, config_file: Path | None = None) -> dict[str, str]:
    """Where each setting's value comes from: ``env CTIR_ES_...``, ``config file`` or ``default``
    (``ctir-es config`` shows it beside the value; a flag, when given, wins over all three)."""
    env = os.environ if env is None else env
    from_file = _file_values(config_file or config_path(env))
    from_env = _env_values(env)
    return {
        k.name: f"env {k.env}" if k.name in from_env else "config file" if k.name in from_file else "default"
        for k in SETTINGS
    }


def configuration_markdown() -> str:
    """The settings table as Markdown (docs/configuration.md holds exactly this)."""
    defaults = Settings()
    rows = ["| setting (config key) | env var | default | values | what it does |", "| --- | --- | --- | --- | --- |"]
    for k in SETTINGS:
        default = getattr(defaults, k.name)
        shown = ("unset" if default is None else "platform dir" if isinstance(default, Path)
                 else ("on" if default else "off") if isinstance(default, bool) else f"`{default}`")
        values = (", ".join(k.choices) if k.choices else f"{k.limits[0]:g} to {k.limits[1]:g}" if k.limits
                  else {"bool": "on / off", "path": "a path"}.get(k.kind, "text"))
        rows.append(f"| `{k.name}` | {f'`{k.env}`' if k.env else 'flag / file only'} | {shown} | {values} | {k.doc} |")
    return "\n".join(rows) + "\n"


def env_value(name: str, env: Mapping[str, str] | None = None) -> Any:
    """Setting ``name`` from its environment variable, parsed and checked like every setting
    (None when unset): for library code that runs without a ``Settings`` object, such as the
    encoders' runtime options, so that no module reads ``os.environ`` on its own."""
    knob = KNOBS[name]
    env = os.environ if env is None else env
    raw = env.get(knob.env) if knob.env else None
    if raw is None or not raw.strip():
        return None
    return _coerce_one(knob, raw)


def env_name(name: str) -> str:
    """The environment variable of setting ``name`` (for messages that tell the fix)."""
    env = KNOBS[name].env
    if env is None:
        raise KeyError(f"setting {name!r} has no environment variable")
    return env
