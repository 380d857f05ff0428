"""Encoder throughput and parity on this machine: PyTorch vs ONNX fp32 vs ONNX int8.

    python benchmarks/encoders.py                  # MiniLM text + CLIP ViT-B-32 (random weights) towers
    python benchmarks/encoders.py --only text      # just the sentence encoder
    python benchmarks/encoders.py --json out.json
    python benchmarks/encoders.py --device cuda    # the ONNX rows on onnxruntime-gpu's CUDA provider

For each encoder: items per second at batch 32 (text) / 16 (images) for the three backends,
the speed-up over PyTorch, and the cosine of each backend's rows to PyTorch's on real inputs
(flipkart-1050 titles and photos): fp32 must be >= 0.999, int8's drop is reported. Rounds
are interleaved (torch, fp32, int8, torch, ...) and the best round counts, because other
processes on a shared 2-core machine make single timings noisy; the load average is printed.

``--device auto|cpu|cuda`` picks the ONNX rows' execution provider as ``ctir-es --device`` does
(cuda without CUDA: the CPU, with one notice); the provider that actually ran is printed on each
row. The PyTorch reference stays on the CPU.

Exports go to the models dir (``--models-dir``, default ``$CTIR_ES_MODELS_DIR`` or
``<cache>/models``) and are reused on the next run. No CLIP weights exist offline, so the
CLIP rows use random ViT-B-32 weights: the same graph and cost as real weights.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ctir_es.encoders import OnnxClipEncoder, OnnxTextEncoder, OpenClipEncoder, SentenceTextEncoder
from ctir_es.encoders.export.common import row_cosines
from ctir_es.encoders.models import default_models_dir, find_model
from ctir_es.encoders.onnx.providers import DEVICES
from ctir_es.encoders.onnx.session import RuntimeOptions

FLIPKART = Path(os.environ.get("CTIR_ES_FLIPKART_DIR", Path(__file__).resolve().parents[2] / "shared/datasets/flipkart-1050"))


def load_inputs(n_texts: int, n_images: int) -> tuple[list[str], list[Image.Image]]:
    if not (FLIPKART / "products.csv").is_file():
        sys.exit(f"flipkart-1050 not found at {FLIPKART}; set CTIR_ES_FLIPKART_DIR")
    with (FLIPKART / "products.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    texts = [r["product_name"] for r in rows][:n_texts]
    images = []
    for r in rows:
        path = FLIPKART / "images" / r["image"]
        if path.is_file():
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
        if len(images) == n_images:
            break
    return texts, images


def ensure_text(models_dir: Path, model: str, quantize: str | None) -> Path:
    from ctir_es.encoders.export.common import ExportOptions
    from ctir_es.encoders.export.text import export_sentence_transformer
    from ctir_es.encoders.registry import expected_text_name

    name = expected_text_name(model) + (f"-{quantize}" if quantize else "")
    found = find_model(name, models_dir)
    if found:
        return found
    print(f"exporting {name} ...", flush=True)
    return export_sentence_transformer(model, ExportOptions(models_dir=models_dir, quantize=quantize, name=name)).path


def ensure_clip(models_dir: Path, arch: str, weights: str, quantize: str | None) -> Path:
    from ctir_es.encoders.export.clip import export_open_clip
    from ctir_es.encoders.export.common import ExportOptions
    from ctir_es.encoders.registry import expected_clip_name

    name = expected_clip_name(arch, weights) + (f"-{quantize}" if quantize else "")
    found = find_model(name, models_dir)
    if found:
        return found
    print(f"exporting {name} ...", flush=True)
    return export_open_clip(arch, weights, ExportOptions(models_dir=models_dir, quantize=quantize, name=name)).path


def bench(fns: dict[str, Callable[[], np.ndarray]], n_items: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Interleaved rounds; the best (fastest) round of each backend counts."""
    outputs = {name: fn() for name, fn in fns.items()}  # warm-up (and the vectors for parity)
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    ref = outputs["torch"]
    out = {}
    for name in fns:
        cos = row_cosines(ref, outputs[name])
        out[name] = {"items_per_s": n_items / best[name], "speedup": best["torch"] / best[name],
                     "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}
    return out


def with_providers(rows: dict[str, dict[str, Any]], encoders: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each row with the execution provider it actually ran on (torch: the CPU)."""
    return {name: {**row, "provider": getattr(encoders[name], "provider", None) or "torch-cpu"}
            for name, row in rows.items()}


def text_rows(models_dir: Path, texts: Sequence[str], batch: int, rounds: int, runtime: RuntimeOptions) -> dict[str, Any]:
    torch_enc = SentenceTextEncoder("all-MiniLM-L6-v2", batch_size=batch).load()
    fp32 = OnnxTextEncoder(ensure_text(models_dir, "all-MiniLM-L6-v2", None), batch_size=batch, runtime=runtime)
    int8 = OnnxTextEncoder(ensure_text(models_dir, "all-MiniLM-L6-v2", "int8"), batch_size=batch, runtime=runtime)
    items = list(texts)
    rows = bench({"torch": lambda: torch_enc.encode_documents(items),
                  "onnx-fp32": lambda: fp32.encode_documents(items),
                  "onnx-int8": lambda: int8.encode_documents(items)}, len(items), rounds)
    return with_providers(rows, {"torch": torch_enc, "onnx-fp32": fp32, "onnx-int8": int8})


def clip_rows(models_dir: Path, texts: Sequence[str], images: Sequence[Image.Image], batch: int, rounds: int,
              runtime: RuntimeOptions) -> dict[str, dict[str, Any]]:
    torch_enc = OpenClipEncoder("ViT-B-32", "random", batch_size=batch).load()
    fp32 = OnnxClipEncoder(ensure_clip(models_dir, "ViT-B-32", "random", None), batch_size=batch, runtime=runtime)
    int8 = OnnxClipEncoder(ensure_clip(models_dir, "ViT-B-32", "random", "int8"), batch_size=batch, runtime=runtime)
    imgs, items = list(images), list(texts)
    encoders = {"torch": torch_enc, "onnx-fp32": fp32, "onnx-int8": int8}
    return {
        "clip-image": with_providers(bench({"torch": lambda: torch_enc.encode_images(imgs),
                                            "onnx-fp32": lambda: fp32.encode_images(imgs),
                                            "onnx-int8": lambda: int8.encode_images(imgs)}, len(imgs), rounds),
                                     encoders),
        "clip-text": with_providers(bench({"torch": lambda: torch_enc.encode_texts(items),
                                           "onnx-fp32": lambda: fp32.encode_texts(items),
                                           "onnx-int8": lambda: int8.encode_texts(items)}, len(items), rounds),
                                    encoders),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["text", "clip"], default=None)
    parser.add_argument("--texts", type=int, default=256, help="titles per round [256]")
    parser.add_argument("--images", type=int, default=64, help="photos per round [64]")
    parser.add_argument("--text-batch", type=int, default=32)
    parser.add_argument("--image-batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads [its default]")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="ONNX execution provider: auto (CUDA when onnxruntime offers it), cpu or cuda [auto]")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    from ctir_es.encoders._torch import import_torch

    torch = import_torch()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")  # the one notice of a cuda fallback
    runtime = RuntimeOptions(threads=args.threads, device=args.device)
    models_dir = args.models_dir or default_models_dir()
    texts, images = load_inputs(args.texts, args.images)
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    if args.only in (None, "text"):
        results["minilm-text"] = text_rows(models_dir, texts, args.text_batch, args.rounds, runtime)
    if args.only in (None, "clip"):
        results.update(clip_rows(models_dir, texts, images, args.image_batch, args.rounds, runtime))
    load_after = os.getloadavg()

    env = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
           "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "onnxruntime": __import__("onnxruntime").__version__, "onnx_threads": args.threads or "default",
           "device": args.device, "onnx_providers_available": __import__("onnxruntime").get_available_providers(),
           "load_avg_before": [round(x, 2) for x in load_before], "load_avg_after": [round(x, 2) for x in load_after]}
    print(f"\n{env}")
    print(f"inputs: {len(texts)} flipkart titles (batch {args.text_batch}), {len(images)} flipkart photos "
          f"(batch {args.image_batch}); best of {args.rounds} interleaved rounds\n")
    print(f"{'encoder':12s} {'backend':10s} {'provider (ran)':22s} {'items/s':>9s} {'vs torch':>9s} {'min cos':>9s} "
          f"{'mean cos':>9s}")
    for enc, rows in results.items():
        for backend, r in rows.items():
            print(f"{enc:12s} {backend:10s} {r['provider']:22s} {r['items_per_s']:9.1f} {r['speedup']:8.2f}x "
                  f"{r['min_cosine']:9.5f} {r['mean_cosine']:9.5f}")
    failures = [f"{enc} fp32 min cosine {rows['onnx-fp32']['min_cosine']:.6f}" for enc, rows in results.items()
                if rows["onnx-fp32"]["min_cosine"] < 0.999]
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "results": results}, indent=2))
    if failures:
        sys.exit("fp32 parity below 0.999: " + "; ".join(failures))


if __name__ == "__main__":
    main()
