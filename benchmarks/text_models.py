"""MiniLM and MPNet side by side: dims, size, ONNX speed on flipkart titles, feature time.

    python benchmarks/text_models.py                  # all-MiniLM-L6-v2 and all-mpnet-base-v2 (ONNX fp32)
    python benchmarks/text_models.py --texts 512 --rounds 3

Each model runs through the project's ONNX text encoder (``load_text_encoder``), so the time
includes tokenization. Quality figures (zero-shot and trained, seen / unseen) come from
``benchmarks/generalise.py``. Install MPNet first: ``ctir-es models install mpnet``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ctir_es.config import Settings
from ctir_es.encoders.models import find_model
from ctir_es.encoders.registry import EncoderConfig, load_text_encoder
from ctir_es.evaluation.runner import load_products
from ctir_es.training.features import modality_content

FLIPKART = Path(os.environ.get("CTIR_ES_FLIPKART_DIR", Path(__file__).resolve().parents[2] / "shared/datasets/flipkart-1050"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["all-MiniLM-L6-v2", "all-mpnet-base-v2"])
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    settings = Settings(clip_weights="none")
    products, _ = load_products("flipkart", FLIPKART, settings)
    titles = [p.title for p in products[: args.texts]]
    attributes = [t for p in products[: args.texts] for t in modality_content(p, "attributes").split("\n") if t]
    rows = []
    for model in args.models:
        encoder = load_text_encoder(EncoderConfig.from_settings(settings, text_model=model))
        model_dir = find_model(model)
        size = sum(f.stat().st_size for f in model_dir.iterdir() if f.suffix == ".onnx") if model_dir else None
        encoder.encode_documents(titles[:8])  # load and warm up
        best = {}
        for name, texts in (("titles", titles), ("attribute texts", attributes)):
            times = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                encoder.encode_documents(texts)
                times.append(time.perf_counter() - t0)
            best[name] = len(texts) / min(times)
        rows.append({"model": model, "id": encoder.manifest["id"], "dims": encoder.dims,
                     "onnx_mb": round(size / 1e6, 1) if size else None,
                     "max_seq_length": (encoder.manifest.get("text") or {}).get("max_seq_length"),
                     "titles_per_s": round(best["titles"], 1), "attribute_texts_per_s": round(best["attribute texts"], 1),
                     "titles": len(titles), "attribute_texts": len(attributes)})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| model | dims | ONNX MB | max tokens | titles/s | attribute texts/s |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['dims']} | {r['onnx_mb']} | {r['max_seq_length']} | {r['titles_per_s']} | "
              f"{r['attribute_texts_per_s']} |")
    print(f"\nload average: {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
