"""CLIP-ITA at run time: frozen encoders + the trained product and category heads on
onnxruntime (no PyTorch).

The product features are defined here, once, for training (``ctir_es.training.features``
caches them) and for ingest alike:

- ``title``: the title through the text encoder (``encode_documents``);
- ``attributes``: the mean of the embeddings of each ``"name: value"`` attribute (up to
  ``MAX_ATTRIBUTES``), zeros when a product has none;
- ``image``: the first image through the CLIP image tower, zeros when there is none.

The product head maps ``concat(enabled modalities)`` (in ``MODALITIES`` order) to the joint
space; the category head maps the category text embedding (``encode_queries``) there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import EncoderError
from ...products import Product, format_category_path, parse_category_path
from ..base import ImageEncoder, Precomputed, ProductImages, TextEncoder, l2_normalise
from ..inputs import check_texts
from ..models import CLIP_ITA_KIND, model_file
from .exported import ExportedModelEncoder
from .session import RuntimeOptions, input_names, open_session

MODALITIES: tuple[str, ...] = ("image", "title", "attributes")
# The paper's ablations: the same model with another modality set.
VARIANTS: dict[str, tuple[str, ...]] = {
    "clip-i": ("image",),
    "clip-ia": ("image", "attributes"),
    "clip-ita": ("image", "title", "attributes"),
    "clip-ta": ("title", "attributes"),  # text only: what runs without CLIP weights
}
QUERY_TEXT_MODES = ("path", "leaf")
MAX_ATTRIBUTES = 32


def check_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    wanted = [m.strip().lower() for m in modalities if m.strip()]
    unknown = [m for m in wanted if m not in MODALITIES]
    if unknown or not wanted:
        raise EncoderError(f"unknown or no modalities {unknown or wanted}; supported: {', '.join(MODALITIES)}")
    return tuple(m for m in MODALITIES if m in wanted)  # canonical order


def variant_name(modalities: Sequence[str]) -> str:
    mods = check_modalities(modalities)
    for name, variant in VARIANTS.items():
        if variant == mods:
            return name
    return "clip-" + "".join(m[0] for m in mods)


def attribute_texts(product: Product, limit: int = MAX_ATTRIBUTES) -> list[str]:
    return [f"{name}: {value}" for name, value in list(product.attributes.items())[:limit]]


def category_text(query: str, mode: str = "path") -> str:
    """A category as the category head was trained on it: the full path, or its last level."""
    path = parse_category_path(query)
    if not path:
        return query.strip()
    return format_category_path(path) if mode == "path" else path[-1]


def attribute_vectors(products: Sequence[Product], text_encoder: TextEncoder, dims: int) -> np.ndarray:
    """Mean attribute embedding per product (identical strings are encoded once)."""
    per_product = [attribute_texts(p) for p in products]
    unique = sorted({t for texts in per_product for t in texts})
    out = np.zeros((len(products), dims), dtype=np.float32)
    if not unique:
        return out
    vectors = dict(zip(unique, text_encoder.encode_documents(unique), strict=True))
    for i, texts in enumerate(per_product):
        if texts:
            out[i] = np.mean([vectors[t] for t in texts], axis=0)
    return out


def image_vectors(images: ProductImages, image_encoder: ImageEncoder, dims: int) -> np.ndarray:
    out = np.zeros((len(images), dims), dtype=np.float32)
    present = [i for i, im in enumerate(images) if im is not None]
    if present:
        out[present] = image_encoder.encode_images([images[i] for i in present])  # type: ignore[misc]
    return out


def product_features(
    products: Sequence[Product],
    modalities: Sequence[str],
    *,
    text_encoder: TextEncoder | None,
    image_encoder: ImageEncoder | None,
    images: ProductImages | None = None,
    precomputed: Precomputed | None = None,
) -> dict[str, np.ndarray]:
    """``{modality: (N, dims)}`` for the enabled modalities (``precomputed`` ones reused)."""
    given = dict(precomputed or {})
    out: dict[str, np.ndarray] = {}
    for modality in check_modalities(modalities):
        if modality in given:
            out[modality] = np.asarray(given[modality], dtype=np.float32)
            continue
        if modality == "image":
            if image_encoder is None:
                raise EncoderError("the image modality needs an image encoder (CLIP weights)")
            if images is None:
                raise EncoderError("the image modality needs the products' images")
            out[modality] = image_vectors(images, image_encoder, image_encoder.dims)
            continue
        if text_encoder is None:
            raise EncoderError(f"the {modality} modality needs a text encoder")
        if modality == "title":
            out[modality] = text_encoder.encode_documents([p.title for p in products])
        else:
            out[modality] = attribute_vectors(products, text_encoder, text_encoder.dims)
    return out


class OnnxHeads:
    """The two exported heads of a CLIP-ITA model dir (``kind: onnx-clip-ita``)."""

    def __init__(self, model_dir: Path, manifest: Mapping[str, Any], runtime: RuntimeOptions) -> None:
        self.product = open_session(model_file(model_dir, manifest, "product_head"), runtime)
        self.category = open_session(model_file(model_dir, manifest, "category_head"), runtime)
        self._product_in = input_names(self.product)[0]
        self._category_in = input_names(self.category)[0]

    def products(self, features: np.ndarray) -> np.ndarray:
        return l2_normalise(self.product.run(None, {self._product_in: features.astype(np.float32)})[0])

    def categories(self, features: np.ndarray) -> np.ndarray:
        return l2_normalise(self.category.run(None, {self._category_in: features.astype(np.float32)})[0])


EncoderLoader = Callable[[Mapping[str, Any]], Any]


class ClipItaEncoder(ExportedModelEncoder):
    """CategoryEncoder over an exported CLIP-ITA model: its frozen text (and image) encoders
    plus the two heads. ``text_encoder`` / ``image_encoder``: already loaded encoders to reuse
    when their ids are the ones the model was trained with; otherwise they are loaded from the
    manifest's references (via the registry, so a missing export is exported once if PyTorch
    is there)."""

    kind = CLIP_ITA_KIND
    label = "CLIP-ITA model"

    def __init__(
        self,
        model: str | Path,
        *,
        models_dir: Path | None = None,
        runtime: RuntimeOptions | None = None,
        text_encoder: TextEncoder | None = None,
        image_encoder: ImageEncoder | None = None,
        load_text: EncoderLoader | None = None,
        load_image: EncoderLoader | None = None,
        batch_size: int = 256,
    ) -> None:
        super().__init__(model, batch_size=batch_size, runtime=runtime, models_dir=models_dir)
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self._load_text = load_text
        self._load_image = load_image
        self._heads: OnnxHeads | None = None

    def _open(self, model_dir: Path, manifest: dict[str, Any]) -> None:
        self.modalities = check_modalities(manifest["modalities"])
        self.query_text = str(manifest.get("query_text") or "path")
        text_ref = manifest["text_encoder"]
        self.text_encoder = self._matching(self.text_encoder, text_ref, self._load_text, "text")
        image_ref = manifest.get("image_encoder")
        if "image" in self.modalities:
            if not image_ref:
                raise EncoderError(f"{model_dir}: the image modality is on but the manifest names no image encoder")
            self.image_encoder = self._matching(self.image_encoder, image_ref, self._load_image, "image")
        else:
            self.image_encoder = None
        dims = manifest.get("feature_dims") or {}
        for modality in self.modalities:
            encoder = self.image_encoder if modality == "image" else self.text_encoder
            if encoder is not None and dims.get(modality) not in (None, encoder.dims):
                raise EncoderError(f"{model_dir}: {modality} features were {dims[modality]}-d in training, "
                                   f"the encoder gives {encoder.dims}")
        self._heads = OnnxHeads(model_dir, manifest, self.runtime)

    def _matching(self, given: Any, ref: Mapping[str, Any], loader: EncoderLoader | None, what: str) -> Any:
        if given is not None and given.manifest.get("id") == ref.get("id"):
            return given
        if loader is None:
            raise EncoderError(
                f"CLIP-ITA model {self.model_name!r} was trained on {what} encoder {ref.get('id')!r}"
                + (f", not {given.manifest.get('id')!r}" if given is not None else "") + "; load that encoder"
            )
        encoder = loader(ref)
        if encoder.manifest.get("id") != ref.get("id"):
            raise EncoderError(f"CLIP-ITA model {self.model_name!r} was trained on {what} encoder {ref.get('id')!r}, "
                               f"but {encoder.manifest.get('id')!r} loaded")
        return encoder

    def encode_categories(self, texts: Sequence[str]) -> np.ndarray:
        """Category texts (``"A > B > C"``) -> the joint space, as in training."""
        self.load()
        assert self._heads is not None and self.text_encoder is not None
        items = [category_text(t, self.query_text) for t in check_texts(texts)]
        if not items:
            return self._no_rows()
        return self._heads.categories(self.text_encoder.encode_queries(items))

    def product_features(self, products: Sequence[Product], images: ProductImages | None = None,
                         precomputed: Precomputed | None = None) -> np.ndarray:
        """The head's input: the enabled modalities' features side by side, in ``MODALITIES`` order."""
        self.load()
        feats = product_features(products, self.modalities, text_encoder=self.text_encoder,
                                 image_encoder=self.image_encoder, images=images, precomputed=precomputed)
        return np.concatenate([feats[m] for m in self.modalities], axis=1)

    def encode_products(self, products: Sequence[Product], images: ProductImages | None = None,
                        precomputed: Precomputed | None = None) -> np.ndarray:
        """Products (and their decoded images, None for none) -> the joint space."""
        self.load()
        assert self._heads is not None
        if not products:
            return self._no_rows()
        return self._heads.products(self.product_features(products, images, precomputed))
