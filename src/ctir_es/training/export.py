"""A training run's heads to ONNX: ``product_head.onnx`` and ``category_head.onnx`` (each with
its L2 normalisation) plus a manifest naming the frozen encoders the features come from, the
modalities, the category text form and the run's test metrics.

The export checks the ONNX heads against the PyTorch ones on random features (fp32 parity,
cosine >= 0.999, or it fails).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders._torch import import_torch
from ..encoders.export.common import ExportResult, check_parity, export_onnx, export_record, parity
from ..encoders.models import (
    CLIP_ITA_KIND,
    FORMAT,
    default_models_dir,
    file_entry,
    file_sha256,
    safe_name,
    staged_dir,
    write_manifest,
)
from ..encoders.onnx.session import open_session
from .errors import TrainingError


def _strip(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    """An encoder manifest as a reference: what reloads and checks it, without bulky parity data."""
    if manifest is None:
        return None
    return {k: v for k, v in manifest.items() if k not in ("parity", "export", "files")}


def read_run(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainingError(f"{run_dir} is not a training run (no config.json); run `ctir-es train` first") from None


def default_run_name(meta: dict[str, Any], run_dir: Path) -> str:
    cfg = meta["config"]
    return safe_name(f"{cfg['variant']}-{cfg['setting']}-{Path(run_dir).resolve().name}")


def export_clip_ita(run_dir: Path, *, models_dir: Path | None = None, name: str | None = None,
                    force: bool = False) -> ExportResult:
    """Export the heads of ``run_dir`` into the models dir; returns the model dir and manifest."""
    torch = import_torch()
    from .model import ClipIta, NormalisedHead

    run_dir = Path(run_dir)
    meta = read_run(run_dir)
    cfg = meta["config"]
    checkpoint = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    state = checkpoint["state_dict"]
    out_dim = int(meta["out_dim"])
    model = ClipIta(int(meta["product_dim"]), int(meta["category_dim"]), out_dim, int(cfg["hidden"]), 0.0,
                    1.0, bool(cfg.get("learn_tau")), bool(cfg.get("skip")))
    model.load_state_dict(state)
    model.eval()
    name = safe_name(name) if name else default_run_name(meta, run_dir)
    target = (models_dir or default_models_dir()) / name
    heads = {"product_head": (NormalisedHead(model.product_head), int(meta["product_dim"]), "features"),
             "category_head": (NormalisedHead(model.category_head), int(meta["category_dim"]), "category_features")}
    with staged_dir(target, force=force) as work:
        infos: dict[str, Any] = {}
        checks: dict[str, Any] = {"reference": "the PyTorch heads (fp32) on random features"}
        rng = np.random.default_rng(0)
        for key, (module, dim, input_name) in heads.items():
            infos[key] = export_onnx(module.eval(), (torch.zeros(2, dim),), work / f"{key}.onnx",
                                     input_names=[input_name], output_names=["embedding"],
                                     dynamic={input_name: {0: "batch"}})
            probe = rng.standard_normal((64, dim)).astype(np.float32)
            with torch.no_grad():
                ref = module(torch.from_numpy(probe)).numpy()
            got = open_session(work / f"{key}.onnx").run(None, {input_name: probe})[0]
            checks[key] = parity(ref, got)
            check_parity(f"CLIP-ITA {key}", checks[key], False)
        metrics_path = run_dir / "metrics.json"
        metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else None
        checkpoint_sha = file_sha256(run_dir / "checkpoint.pt")
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "kind": CLIP_ITA_KIND,
            "name": name,
            "id": f"{name}@sha256:{checkpoint_sha[:16]}",
            "dims": out_dim,
            "normalised": True,
            "variant": cfg["variant"],
            "modalities": list(cfg["modalities"]),
            "feature_dims": meta["feature_dims"],
            "query_text": cfg["query_text"],
            "setting": cfg["setting"],
            "text_encoder": _strip(meta["text_encoder"]),
            "image_encoder": _strip(meta.get("image_encoder")),
            "features": {
                "title": "title -> text encoder (documents)",
                "attributes": "mean over 'name: value' attributes (first 32) -> text encoder (documents); zeros if none",
                "image": "first image, thumbnailed to 768 px -> CLIP image tower; zeros if none",
                "category": "category text (query_text) -> text encoder (queries)",
                "order": list(cfg["modalities"]),
            },
            "source": {"run_dir": str(run_dir.resolve()), "checkpoint_sha256": checkpoint_sha,
                       "best_epoch": meta.get("best_epoch"), "epochs_run": meta.get("epochs_run"),
                       "seconds": meta.get("seconds"), "data": meta.get("data")},
            "training": cfg,
            "test_metrics": metrics,
            "inputs": {"product_head": ["features"], "category_head": ["category_features"]},
            "outputs": ["embedding"],
            "opset": infos["product_head"].get("opset"),
            "export": export_record(**infos),
            "files": {key: file_entry(work, f"{key}.onnx") for key in heads},
            "parity": checks,
        }
        write_manifest(work, manifest)
    return ExportResult(target, manifest)
