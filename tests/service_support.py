"""Helpers for the Search API, HTTP service and browser tests: the bundled sample indexed
once per session with the tiny real models (through ``Search.index``), then copied."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Self

from store_support import copy_vectors

from ctir_es.ingest.images import ImageLoader
from ctir_es.ingest.readers import read_jsonl
from ctir_es.ingest.report import IngestReport
from ctir_es.sample import sample_path
from ctir_es.search import Search
from ctir_es.store.embedded import EmbeddedStore

SAMPLE_IMAGES = sample_path().parent / "images"
CATEGORY = "Kitchen & Dining > Cookware"

_encoders: dict[tuple[str, str | None], tuple[Any, Any]] = {}
_built: dict[tuple[str, str | None, str | None], Path] = {}


def encoders(text_dir: Path, clip: Any | None) -> tuple[Any, Any]:
    """The tiny text encoder and (when ``clip`` is given) the tiny CLIP, loaded once."""
    from ctir_es.encoders.registry import EncoderConfig, load_image_encoder, load_text_encoder

    key = (str(text_dir), str(clip.checkpoint) if clip else None)
    if key not in _encoders:
        text = load_text_encoder(EncoderConfig(text_model=str(text_dir)))
        image = None
        if clip is not None:
            # the config .json as architecture: the index manifest then names a file that a
            # `ctir-es serve` subprocess can load too
            image = load_image_encoder(EncoderConfig(clip_architecture=str(clip.config),
                                                     clip_weights=str(clip.checkpoint)))
        _encoders[key] = (text, image)
    return _encoders[key]


def sample_search(tmp_dir: Path, text_dir: Path, clip: Any | None,
                  lexical: str | None = None) -> tuple[Search, IngestReport | None]:
    """A ``Search`` over a private copy of the sample store (built on first use with
    ``Search.index``; the report is returned only for that first build). ``lexical``: the
    store's lexical engine (None: the default of new stores)."""
    text, image = encoders(text_dir, clip)
    key = (str(text_dir), str(clip.checkpoint) if clip else None, lexical)
    report = None
    tmp_dir.mkdir(parents=True, exist_ok=True)
    if key not in _built:
        build_dir = tmp_dir / "built"
        build_dir.mkdir()
        builder = Search(EmbeddedStore(build_dir / "sample.db", lexical=lexical), text, image, ImageLoader())
        report = builder.index(read_jsonl(sample_path(), IngestReport()))
        builder.close()
        _built[key] = build_dir / "sample.db"
    path = tmp_dir / "store.db"
    shutil.copyfile(_built[key], path)
    copy_vectors(_built[key], path)
    lexical = _built[key].with_name(_built[key].name + ".lexical")  # the tantivy engine's index, if any
    if lexical.is_dir():
        shutil.copytree(lexical, path.with_name(path.name + ".lexical"))
    return Search(EmbeddedStore(path), text, image, ImageLoader(cache_dir=tmp_dir / "cache")), report


def sample_image(name_part: str = "") -> Path:
    return next(p for p in sorted(SAMPLE_IMAGES.glob("*.jpg")) if name_part in p.name)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """``ctir-es serve`` in a subprocess on ``store`` (a private config and cache), stopped
    by its own pid on exit. ``url`` is where it answers once ``/health`` says ok."""

    def __init__(self, store: Path, tmp_dir: Path, *extra: str, startup_timeout: float = 90,
                 env: dict[str, str] | None = None) -> None:
        self.store = store
        self.env = dict(env or {})  # on top of this process's environment
        self.tmp_dir = tmp_dir
        self.extra = extra
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        self.log = tmp_dir / "serve.log"
        self.proc: Any = None

    def __enter__(self) -> Self:
        import os
        import subprocess
        import sys
        import time
        import urllib.request

        env = {**os.environ, "CTIR_ES_CONFIG": str(self.tmp_dir / "absent.toml"),
               "CTIR_ES_CACHE_DIR": str(self.tmp_dir / "cache")}
        for var in ("CTIR_ES_URL", "CTIR_ES_STORE", "CTIR_ES_TEXT_MODEL", "CTIR_ES_CLIP_MODEL", "CTIR_ES_CLIP_WEIGHTS"):
            env.pop(var, None)
        env.update(self.env)
        cli = Path(sys.executable).parent / "ctir-es"
        cmd = [str(cli) if cli.exists() else sys.executable, *([] if cli.exists() else ["-m", "ctir_es.cli"]),
               "serve", "--store", str(self.store), "--port", str(self.port), *self.extra]
        self._log_fh = open(self.log, "wb")  # closed in __exit__
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log_fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ctir-es serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.__exit__()
        raise RuntimeError(f"ctir-es serve did not answer within {self.startup_timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __exit__(self, *exc: object) -> None:
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log_fh.close()


def sample_store_file(tmp_dir: Path, text_dir: Path, clip: Any | None) -> Path:
    """A private copy of the sample store file (built on first use)."""
    search, _ = sample_search(tmp_dir, text_dir, clip)
    search.close()
    return tmp_dir / "store.db"


def sample_store_with_values(root: Path, text_dir: Path, values_of: Any) -> Path:
    """The sample indexed into ``root/store.db`` with the tiny text model, product ``i`` (its line)
    given the typed values ``values_of(i)`` (the shop-search tests' catalogue)."""
    import json

    catalogue = root / "products.jsonl"
    with open(sample_path(), encoding="utf-8") as src, open(catalogue, "w", encoding="utf-8") as out:
        for i, line in enumerate(src):
            record = json.loads(line)
            record["values"] = values_of(i)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    text, _ = encoders(text_dir, None)
    path = root / "store.db"
    with Search(EmbeddedStore(path), text, None, ImageLoader()) as search:
        search.index(read_jsonl(catalogue, IngestReport()))
    return path
