"""Export an open_clip model to ONNX: ``image.onnx`` (pixels -> normalised embedding),
``text.onnx`` (token ids -> normalised embedding), open_clip's BPE as a HF ``tokenizers``
file, and a manifest with the preprocessing constants.

Each export checks itself: token ids equal to open_clip's tokenizer, preprocessed pixels
against open_clip's transform (maximum absolute difference recorded), and embeddings
against PyTorch (fp32: cosine >= 0.999 or the export fails; int8: the drop is recorded).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import EncoderError
from .._torch import import_open_clip, import_torch
from ..clip import OpenClipEncoder
from ..models import (
    CLIP_KIND,
    clip_model_name,
    file_entry,
    safe_name,
    staged_dir,
    write_manifest,
)
from . import common


def build_clip_tokenizer(open_clip_tokenizer: Any, context_length: int) -> Any:
    """open_clip's SimpleTokenizer as a HF ``tokenizers.Tokenizer`` (same vocabulary and ids).

    Text cleaning stays in Python (``clean_clip_text``); this does the regex split, byte-level
    mapping, BPE with ``</w>`` word ends, ``<start_of_text>``/``<end_of_text>`` around the ids
    and truncation that keeps the end token last.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
    )

    tok = open_clip_tokenizer
    if type(tok).__name__ != "SimpleTokenizer":
        raise EncoderError(f"open_clip tokenizer {type(tok).__name__} is not supported by the ONNX runtime "
                           "(only the CLIP BPE SimpleTokenizer is)")
    if getattr(tok, "reduction_fn", None) is not None:
        raise EncoderError("open_clip tokenizers with a reduction mask are not supported by the ONNX runtime")
    merges = [pair for pair, _ in sorted(tok.bpe_ranks.items(), key=lambda item: item[1])]
    vocab = dict(tok.encoder)
    specials = [t for t in vocab if t.startswith("<") and t.endswith(">") and vocab[t] in tok.all_special_ids]
    bpe = models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", continuing_subword_prefix="",
                     fuse_unk=False)
    hf = Tokenizer(bpe)
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in specials])
    sot = tok.decoder[tok.sot_token_id]
    eot = tok.decoder[tok.eot_token_id]
    hf.post_processor = processors.TemplateProcessing(
        single=f"{sot} $A {eot}", special_tokens=[(sot, tok.sot_token_id), (eot, tok.eot_token_id)])
    hf.enable_truncation(max_length=context_length)
    return hf


def _towers(torch: Any, model: Any) -> tuple[Any, Any]:
    """The image and the text tower of ``model`` as modules of their own (L2-normalised output)."""

    class Tower(torch.nn.Module):
        def __init__(self, m: Any, encode: str) -> None:
            super().__init__()
            self.m = m
            self.encode = encode  # "encode_image" | "encode_text"

        def forward(self, inputs: Any) -> Any:
            return getattr(self.m, self.encode)(inputs, normalize=True)

    return Tower(model, "encode_image").eval(), Tower(model, "encode_text").eval()


def parity_images() -> list[Image.Image]:
    """Synthetic images of awkward shapes and modes (callers add real photos)."""
    rng = np.random.default_rng(0)
    out = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in
           ((240, 320), (500, 180), (64, 64), (31, 97))]
    out.append(Image.new("L", (120, 90), 77))
    return out


def export_open_clip(
    architecture: str = "ViT-B-32",
    weights: str | None = "laion2b_s34b_b79k",
    options: common.ExportOptions | None = None,
    *,
    parity_images_extra: Sequence[Image.Image] = (),
) -> common.ExportResult:
    """Export an open_clip architecture with its weights (tag, local file or ``random``);
    ``options`` as ``export_sentence_transformer`` takes them."""
    options = options or common.ExportOptions()
    quantize = options.quantize
    torch = import_torch()
    open_clip = import_open_clip()
    reference = OpenClipEncoder(architecture, weights, batch_size=8).load()
    source = reference.manifest
    model = reference._model
    context = int(source.get("context_length") or 77)
    tokenizer = build_clip_tokenizer(reference._tokenizer, context)
    name = safe_name(options.name) if options.name else clip_model_name(str(source["id"]), quantize)
    target = options.target_dir(name)
    image_size = source["image"]["size"]
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    image_tower, text_tower = _towers(torch, model)

    with staged_dir(target, force=options.force) as work, tempfile.TemporaryDirectory(prefix="ctir-export-") as tmp:
        infos = {}
        with common.export_errors(f"open_clip {architecture}"):
            infos["image"] = common.export_onnx(image_tower, (torch.zeros(2, 3, *size),), Path(tmp) / "image.onnx",
                                         input_names=["pixel_values"], output_names=["image_embeds"],
                                         dynamic={"pixel_values": {0: "batch"}})
            ids = reference._tokenizer(["a blender", "kitchen & dining"])
            infos["text"] = common.export_onnx(text_tower, (ids,), Path(tmp) / "text.onnx", input_names=["input_ids"],
                                        output_names=["text_embeds"], dynamic={"input_ids": {0: "batch"}})
        quant = {}
        for tower in ("image", "text"):
            record = common.place_onnx(Path(tmp) / f"{tower}.onnx", work / f"{tower}.onnx", quantize)
            if record is not None:
                quant[tower] = record
        tokenizer.save(str(work / "tokenizer.json"))
        pad_token = reference._tokenizer.decoder.get(0, "!")
        manifest: dict[str, Any] = {
            **common.manifest_head(CLIP_KIND, name, source, quantize),
            "architecture": source["name"],
            "source": {k: source.get(k) for k in ("kind", "id", "name", "architecture", "weights",
                                                  "weights_sha256", "random")},
            "image": {**source["image"], "size": list(size)},
            "text": {"context_length": context, "clean": _clean_name(reference._tokenizer), "pad_id": 0, "pad_token": pad_token,
                     "sot_id": int(reference._tokenizer.sot_token_id),
                     "eot_id": int(reference._tokenizer.eot_token_id),
                     "ftfy": True},
            "inputs": {"image": ["pixel_values"], "text": ["input_ids"]},
            "outputs": {"image": ["image_embeds"], "text": ["text_embeds"]},
            "opset": infos["image"].get("opset"),
            "export": common.export_record(image=infos["image"], text=infos["text"], quantization=quant or None),
            "files": {"image": file_entry(work, "image.onnx"), "text": file_entry(work, "text.onnx"),
                      "tokenizer": file_entry(work, "tokenizer.json")},
        }
        write_manifest(work, manifest)
        manifest["parity"] = clip_parity(reference, work, options.all_parity_texts(),
                                         [*parity_images(), *parity_images_extra], quantize, open_clip)
        write_manifest(work, manifest)
    return common.ExportResult(target, manifest)


def _clean_name(tokenizer: Any) -> str:
    fn = getattr(tokenizer, "clean_fn", None)
    name = getattr(fn, "__name__", "")
    if name == "_clean_lower":
        return "lower"
    if name == "_clean_whitespace":
        return "whitespace"
    raise EncoderError(f"open_clip text cleaning {name or fn!r} is not supported by the ONNX runtime")


def clip_parity(reference: OpenClipEncoder, work: Path, texts: Sequence[str], images: Sequence[Image.Image],
                quantize: str | None, open_clip: Any) -> dict[str, Any]:
    """Tokens, pixels and embeddings of the ONNX model in ``work`` against open_clip."""
    from ..onnx.clip import OnnxClipEncoder

    candidate = OnnxClipEncoder(work, batch_size=8)
    rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
    ours = candidate.pixels(rgb)
    theirs = np.stack([reference._preprocess(im).numpy() for im in rgb])
    ref_ids = reference._tokenizer(list(texts)).numpy()
    out: dict[str, Any] = {"reference": "open_clip (PyTorch, fp32)"}
    out["tokens_equal"] = bool(np.array_equal(candidate.tokenize(list(texts)), ref_ids))
    out["pixels_max_abs_diff"] = float(np.abs(ours - theirs).max())
    out["image"] = common.parity(reference.encode_images(rgb), candidate.encode_images(rgb))
    out["text"] = common.parity(reference.encode_texts(list(texts)), candidate.encode_texts(list(texts)))
    if not out["tokens_equal"]:
        raise EncoderError("the ONNX CLIP tokenizer gives other token ids than open_clip's; the export is not usable")
    common.check_parity("CLIP image tower", out["image"], quantize is not None)
    common.check_parity("CLIP text tower", out["text"], quantize is not None)
    out["checked"] = common.timestamp()
    return out
