"""Export a sentence-transformers model to ONNX: transformer, pooling (and any Dense layers)
and L2 normalisation in one graph, with its HF ``tokenizers`` file and a manifest.

Every export checks itself against PyTorch on a set of texts (``PARITY_TEXTS`` plus any the
caller gives): fp32 must reach cosine >= 0.999 per text or the export fails; int8 records
its cosine drop in the manifest.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import EncoderError
from .._torch import import_torch
from ..models import (
    SENTENCE_KIND,
    file_entry,
    safe_name,
    staged_dir,
    write_manifest,
)
from ..sentence import KNOWN_TEXT_MODELS, SentenceTextEncoder
from . import common


def default_text_name(source_manifest: dict[str, Any], quantize: str | None) -> str:
    """``all-MiniLM-L6-v2`` for known models; ``<folder>-<sha8>`` for other folders; ``-int8``."""
    name = str(source_manifest["name"])
    known = {canonical for canonical, _ in KNOWN_TEXT_MODELS.values()}
    if name not in known:
        name = f"{name}-{str(source_manifest.get('weights_sha256') or 'unknown')[:8]}"
    return safe_name(name + (f"-{quantize}" if quantize else ""))


class _SentenceGraph:
    """``(input_ids, attention_mask[, token_type_ids]) -> normalised sentence embedding``."""

    @staticmethod
    def build(st_model: Any, input_names: Sequence[str]) -> Any:
        torch = import_torch()

        class SentenceGraph(torch.nn.Module):  # type: ignore[misc,name-defined]
            def __init__(self, model: Any) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
                given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
                out = self.model({n: given[n] for n in input_names})["sentence_embedding"]
                return torch.nn.functional.normalize(out, p=2.0, dim=1)

        return SentenceGraph(st_model).eval()


def _transformer_module(st_model: Any) -> Any:
    first = st_model[0]
    if not hasattr(first, "tokenizer") or not hasattr(first, "auto_model"):
        raise EncoderError(f"the first module of this sentence-transformer is {type(first).__name__}, "
                           "not a Transformer: it cannot be exported")
    return first


def _max_positions(transformer: Any) -> int:
    config = getattr(transformer.auto_model, "config", None)
    value = int(getattr(config, "max_position_embeddings", 0) or 0)
    return value if value > 2 else 512


def _pooling_includes_prompt(st_model: Any) -> bool:
    for module in st_model:
        if type(module).__name__ == "Pooling":
            return bool(getattr(module, "include_prompt", True))
    return True


def export_sentence_transformer(
    model: str,
    options: common.ExportOptions | None = None,
) -> common.ExportResult:
    """Export ``model`` (a name or folder, as ``--text-model`` takes) into the models dir
    (``options``: where, under which name, quantised or not; the defaults when None)."""
    options = options or common.ExportOptions()
    quantize = options.quantize
    import_torch()  # fails early, naming the pip command, without the training extra
    reference = SentenceTextEncoder(model, cache_dir=options.cache_dir, batch_size=16).load()
    source = reference.manifest
    st_model = reference._model  # the loaded SentenceTransformer
    transformer = _transformer_module(st_model)
    hf_tokenizer = transformer.tokenizer
    if not getattr(hf_tokenizer, "is_fast", False):
        raise EncoderError(f"text model {model!r} has no fast (tokenizers) tokenizer: it cannot run without torch")
    prompts = {k: v for k, v in (getattr(st_model, "prompts", None) or {}).items() if k in ("query", "document") and v}
    if prompts and not _pooling_includes_prompt(st_model):
        raise EncoderError(f"text model {model!r} pools without its prompt tokens; the ONNX runtime cannot do that yet")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in hf_tokenizer.model_input_names]
    if "input_ids" not in names or "attention_mask" not in names:
        raise EncoderError(f"text model {model!r} takes inputs {hf_tokenizer.model_input_names}; cannot export")
    name = safe_name(options.name) if options.name else default_text_name(source, quantize)
    target = options.target_dir(name)

    with staged_dir(target, force=options.force) as work, tempfile.TemporaryDirectory(prefix="ctir-export-") as tmp:
        fp32_path = Path(tmp) / "model.onnx"
        example = hf_tokenizer(["a blender", "kitchen & dining"], padding=True, return_tensors="pt")
        args = tuple(example[n] for n in names)
        with common.export_errors(f"text model {model!r}"):
            info = common.export_onnx(_SentenceGraph.build(st_model, names), args, fp32_path, input_names=names,
                               output_names=["sentence_embedding"],
                               dynamic={n: {0: "batch", 1: "sequence"} for n in names},
                               dim_max={"sequence": _max_positions(transformer)})
        quant_info = common.place_onnx(fp32_path, work / "model.onnx", quantize)
        hf_tokenizer.backend_tokenizer.save(str(work / "tokenizer.json"))
        manifest: dict[str, Any] = {
            **common.manifest_head(SENTENCE_KIND, name, source, quantize),
            "source": {
                "kind": source["kind"],
                "model": model,
                "name": source["name"],
                "id": source["id"],
                "path": source["source"],
                "weights_sha256": source["weights_sha256"],
            },
            "text": {
                "max_seq_length": int(st_model.max_seq_length or hf_tokenizer.model_max_length),
                "do_lower_case": False,  # lower-casing, if any, lives in tokenizer.json's normaliser
                "pad_token": str(hf_tokenizer.pad_token),
                "pad_id": int(hf_tokenizer.pad_token_id or 0),
                "prompts": prompts,
                "pooling": "inside the graph (the model's own Pooling/Dense modules), then L2 normalise",
            },
            "inputs": names,
            "outputs": ["sentence_embedding"],
            "opset": info["opset"],
            "export": common.export_record(**info, quantization=quant_info),
            "files": {"model": file_entry(work, "model.onnx"), "tokenizer": file_entry(work, "tokenizer.json")},
        }
        write_manifest(work, manifest)
        manifest["parity"] = _text_parity(reference, work, options.all_parity_texts(), quantize)
        write_manifest(work, manifest)
    return common.ExportResult(target, manifest)


def _text_parity(reference: SentenceTextEncoder, work: Path, texts: Sequence[str],
                 quantize: str | None) -> dict[str, Any]:
    from ..onnx.text import OnnxTextEncoder

    candidate = OnnxTextEncoder(work, batch_size=16)
    out: dict[str, Any] = {"reference": "sentence-transformers (PyTorch, fp32)"}
    for task, method in (("query", "encode_queries"), ("document", "encode_documents")):
        ref = getattr(reference, method)(list(texts))
        got = getattr(candidate, method)(list(texts))
        out[task] = common.parity(ref, got)
        common.check_parity(f"text model {reference.model_name!r} ({task}s)", out[task], quantize is not None)
    out["checked"] = common.timestamp()
    return out
