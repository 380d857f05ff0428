#!/usr/bin/env python
"""Build the bundled demo catalogue ``src/ctir_es/sample/`` from the flipkart-1050 dataset.

Deterministic: products are read with ``read_flipkart``; per top-level category we take
those with an image, put every "Kitchen & Dining > Cookware" product first (the demo's
showcase subtree), then fill up to ``--per-category`` round-robin over second-level
categories (diversity), ordering products inside a category by a hash of their id.
Images become thumbnails (max 160 px, JPEG quality 80).

    python scripts/make_sample.py ../shared/datasets/flipkart-1050   # from the repository root
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from itertools import zip_longest
from pathlib import Path

from PIL import Image

from ctir_es.ingest.readers import read_flipkart
from ctir_es.ingest.report import IngestReport
from ctir_es.products import Product

SHOWCASE = ("Kitchen & Dining", "Cookware")
OUT = Path(__file__).resolve().parents[1] / "src" / "ctir_es" / "sample"
THUMB_PX = 160
QUALITY = 80
MAX_PRODUCTS = 300


def _key(p: Product) -> str:
    return hashlib.sha256(p.id.encode()).hexdigest()


def select(products: list[Product], per_category: int) -> list[Product]:
    """Pick up to ``per_category`` products per top-level category (see module doc)."""
    by_top: dict[str, list[Product]] = defaultdict(list)
    for p in products:
        if p.categories and p.images and Path(p.images[0]).is_file():
            by_top[p.categories[0][0]].append(p)
    chosen: list[Product] = []
    for top in sorted(by_top):
        items = sorted(by_top[top], key=_key)
        first = [p for p in items if p.categories[0][:2] == SHOWCASE]
        by_second: dict[str, list[Product]] = defaultdict(list)
        for p in items:
            if p not in first:
                by_second[p.categories[0][1] if len(p.categories[0]) > 1 else ""].append(p)
        round_robin = [
            p
            for group in zip_longest(*(by_second[k] for k in sorted(by_second)))
            for p in group
            if p
        ]
        chosen.extend((first + round_robin)[: max(per_category, len(first))])
    return chosen[:MAX_PRODUCTS]


def write_sample(chosen: list[Product], out: Path) -> None:
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    for old in images.glob("*.jpg"):
        old.unlink()
    with open(out / "products.jsonl", "w", encoding="utf-8") as fh:
        for p in chosen:
            src = Path(p.images[0])
            with Image.open(src) as im:
                im = im.convert("RGB")
                im.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
                im.save(images / src.name, "JPEG", quality=QUALITY, optimize=True)
            record = p.to_json()
            record["images"] = [f"images/{src.name}"]
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="the flipkart-1050 directory")
    parser.add_argument("--per-category", type=int, default=40)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    report = IngestReport(source=str(args.dataset))
    chosen = select(list(read_flipkart(args.dataset, report)), args.per_category)
    write_sample(chosen, args.out)
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(
        f"read {report.read}, rejected {report.rejected_total}; wrote {len(chosen)} products, "
        f"{size / 1e6:.2f} MB to {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
