"""``ingest_catalogue``: read a catalogue, encode it and index it - the function behind
``ctir-es ingest``. Returns the ``IngestReport``; the CLI only renders it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from ..config import Settings, enabled
from ..encoders.base import CategoryEncoder, ImageEncoder, TextEncoder
from ..encoders.loading import category_encoder_for_schema
from ..errors import SourceError
from ..products import Product
from ..schema import IndexSchema
from ..store.open import open_store
from ..vocabulary import CLIP_ITA_VECTOR
from .images import ImageLoader
from .pipeline import IngestOptions, Pipeline, source_key
from .readers import declared_specs, get_reader
from .report import IngestReport
from .value_types import ValueTyper

KINDS = ("jsonl", "flipkart", "xmarket", "sample")


def check_source(
    kind: str, source: str | Path | None, *, market: str | None = None, category: str | None = None
) -> None:
    """Raise ``SourceError`` when the options cannot name a catalogue: called before any model is
    loaded, so a missing option costs no wait."""
    if kind == "xmarket" and source is None and not (market and category):
        raise SourceError("xmarket needs --market and --category (to download) or --source FILE_OR_DIR")
    if kind not in ("sample", "xmarket") and source is None:
        raise SourceError(f"{kind} needs a source file or directory")


def open_source(
    kind: str,
    source: str | Path | None,
    report: IngestReport,
    settings: Settings,
    *,
    market: str | None = None,
    category: str | None = None,
) -> tuple[Iterable[Product], str]:
    """The product stream for a catalogue and the checkpoint key of that exact source."""
    check_source(kind, source, market=market, category=category)
    if kind == "sample":
        from ..sample import sample_path

        kind, source = "jsonl", sample_path()
    if kind == "xmarket" and source is None and market and category:
        from .download import download, xmarket_url

        source = download(xmarket_url(market, category), settings.download_cache)
    if source is None:
        raise SourceError(f"{kind} needs a source file or directory")
    path = Path(source)
    if not path.exists():
        raise SourceError(f"{path} does not exist")
    report.source = f"{kind}:{path}"
    reader = get_reader(kind)
    products = reader(path, report, market=market) if kind == "xmarket" else reader(path, report)
    return products, source_key(kind, path, market or "")


def ingest_catalogue(
    kind: str,
    source: str | Path | None,
    settings: Settings,
    *,
    text_encoder: TextEncoder | None,
    image_encoder: ImageEncoder | None,
    market: str | None = None,
    category: str | None = None,
    options: IngestOptions | None = None,
    on_batch: Callable[[IngestReport], None] | None = None,
    report: IngestReport | None = None,
    clip_ita: CategoryEncoder | None = None,
) -> IngestReport:
    """``clip_ita``: a loaded CLIP-ITA model; when None, the one configured (``$CTIR_ES_CLIP_ITA``)
    is loaded, else the one the target index was built with (its ``clip_ita`` field), if any."""
    report = report or IngestReport()
    if clip_ita is None:  # a configured model loads before any work
        clip_ita = load_clip_ita(settings, report, text_encoder, image_encoder)
    products, key = open_source(kind, source, report, settings, market=market, category=category)
    reader = "jsonl" if kind == "sample" else kind
    # the index's types, then the config's [values], then the reader's, then inferred (value_types.py)
    types = ValueTyper(settings.value_types, declared_specs(reader, market), source=f"the {reader} reader")
    loader = ImageLoader(cache_dir=settings.image_cache, timeout=settings.image_timeout,
                         allow_private=settings.allow_private_images)
    store = open_store(settings)
    try:
        pipeline = Pipeline(
            store,
            text_encoder=text_encoder,
            image_encoder=image_encoder,
            load_images=lambda refs: loader.load_many(refs, workers=settings.image_workers),
            options=options or IngestOptions(),
            clip_ita=clip_ita,
            # no model configured: the one the index holds, read from the schema the pipeline's
            # setup returns (no extra store round trip before the writer starts)
            index_model=lambda schema: index_clip_ita(schema, settings, report, text_encoder, image_encoder),
            value_types=types,
        )
        return pipeline.run(products, report, checkpoint_key=key, on_batch=on_batch)
    finally:
        store.close()


def load_encoders(
    settings: Settings, report: IngestReport, *, with_images: bool = True
) -> tuple[TextEncoder | None, ImageEncoder | None]:
    """The encoders an ingest uses, loaded now so a bad model fails before any work.

    No image weights is not an error: the ingest goes on text-only and says so in one line.
    With the ONNX backend (the default) a model used for the first time is exported once when
    PyTorch is installed; the report says so in one line.
    """
    from ..encoders.registry import EncoderConfig, load_text_encoder, try_load_image_encoder

    cfg = EncoderConfig.from_settings(settings)
    text = None if enabled(settings.text_model) is None else load_text_encoder(cfg, report.message)
    if text is None:
        report.message("no text encoder (--text-model none): BM25 only, no title vectors")
    image = None
    if not with_images:
        report.message("images not fetched (--no-images): no image vectors")
    elif not settings.use_images:
        report.message("image vectors off (--clip-weights none): text-only ingest")
    else:
        image, notice = try_load_image_encoder(cfg, report.message)
        if notice:
            report.message(notice)
    return text, image


def load_clip_ita(
    settings: Settings,
    report: IngestReport,
    text_encoder: TextEncoder | None,
    image_encoder: ImageEncoder | None,
) -> CategoryEncoder | None:
    """The configured CLIP-ITA model, loaded now with its frozen encoders (reusing the ingest's
    own when they are the same), or None when none is configured."""
    name = enabled(settings.clip_ita)
    if name is None:
        return None
    from ..encoders.registry import EncoderConfig
    from ..encoders.registry import load_clip_ita as load

    model = load(name, EncoderConfig.from_settings(settings), text_encoder=text_encoder,
                 image_encoder=image_encoder, notify=report.message)
    manifest = model.manifest
    report.message(f"CLIP-ITA {manifest['name']} ({manifest['variant']}, {'+'.join(manifest['modalities'])}): "
                   f"clip_ita vectors, {manifest['dims']} dims")
    return model


def index_clip_ita(
    schema: IndexSchema,
    settings: Settings,
    report: IngestReport,
    text_encoder: TextEncoder | None,
    image_encoder: ImageEncoder | None,
) -> CategoryEncoder | None:
    """The CLIP-ITA model the target index holds vectors of (read from its schema, reusing the
    ingest's encoders), so that products ingested later get their ``clip_ita`` vector with no
    setting; None when the index has no ``clip_ita`` field.
    ``ModelMissing`` when its folder is gone: an ingest without it would leave a hole in the field."""
    if CLIP_ITA_VECTOR not in schema.vectors:
        return None
    model = category_encoder_for_schema(schema, settings, text_encoder, image_encoder)
    if model is not None:
        manifest = model.manifest
        report.message(f"CLIP-ITA {manifest.get('name')} ({manifest.get('variant')}, "
                       f"{'+'.join(manifest.get('modalities') or [])}), the index's model: clip_ita vectors, "
                       f"{model.dims} dims")
    return model
