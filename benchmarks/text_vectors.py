"""Real text vectors for the approximate-index recall figures: MiniLM (all-MiniLM-L6-v2, ONNX)
encodings of realistic product titles, cached under ``artifacts/benchmarks/text-vectors``.

    python benchmarks/text_vectors.py --n 100000 --queries 1000    # encode (cached afterwards)

The 1050 flipkart titles are too few, so titles are synthesised from their vocabulary, per
category: a title is a real flipkart title of some leaf category with its brand replaced by a
brand seen in the same top-level category, 0-2 of its words swapped for words of other titles
of the same leaf (colours, materials, styles, model numbers), one word sometimes dropped, and a
pack/size phrase sometimes appended. That keeps what makes real catalogues hard for an ANN
index: many near-duplicate titles per category, skewed category sizes, shared brand words.
Queries are short shopper queries built the same way (2-4 words of one leaf's titles, with a
chance of a brand), encoded with ``encode_queries``. The method is deterministic per seed.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

ROOT = Path(__file__).resolve().parents[1]
FLIPKART = Path(os.environ.get("CTIR_ES_FLIPKART_DIR", ROOT.parent / "shared/datasets/flipkart-1050"))
CACHE = ROOT / "artifacts" / "benchmarks" / "text-vectors"
PACKS = ["Pack of 2", "Pack of 3", "Set of 4", "Combo", "Free Size", "Large", "Medium", "Small", "XL", "1 L",
         "500 ml", "King Size", "Single", "Double", "For Men", "For Women", "For Boys", "For Girls", "For Kids"]


def _catalogue() -> list[tuple[str, str, str, list[str]]]:
    """(top category, leaf category, brand, title words) of every flipkart product."""
    out = []
    with open(FLIPKART / "products.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            tree = re.findall(r"[^\[\]\"]+", row["product_category_tree"])[0].split(">>")
            levels = [t.strip() for t in tree if t.strip() and "..." not in t]
            top = levels[0] if levels else "Other"
            leaf = " > ".join(levels[:3]) if levels else "Other"
            words = row["product_name"].split()
            brand = (row.get("brand") or "").strip() or (words[0] if words else "")
            out.append((top, leaf, brand, words))
    return out


def titles(n: int, seed: int = 0) -> list[str]:
    cat = _catalogue()
    rng = np.random.default_rng(seed)
    brands: dict[str, list[str]] = {}
    vocab: dict[str, list[str]] = {}
    for top, leaf, brand, words in cat:
        brands.setdefault(top, []).append(brand)
        vocab.setdefault(leaf, []).extend(w for w in words if len(w) > 2)
    out = []
    # skewed category sizes: a base product is drawn with Zipf-like weights over its leaf's rank
    leaf_rank = {leaf: r for r, leaf in enumerate(sorted(vocab, key=lambda x: -len(vocab[x])))}
    weights = np.array([1.0 / (1 + leaf_rank[leaf]) ** 0.5 for _, leaf, _, _ in cat])
    weights /= weights.sum()
    picks = rng.choice(len(cat), size=n, p=weights)
    draws = rng.random((n, 6))
    for i, j in enumerate(picks.tolist()):
        top, leaf, brand, words = cat[j]
        words = list(words)
        d = draws[i]
        new_brand = brands[top][int(d[0] * len(brands[top]))]
        if brand and words and words[0].lower() == brand.split()[0].lower():
            words[0] = new_brand
        else:
            words.insert(0, new_brand)
        pool = vocab[leaf]
        for _ in range(int(d[1] * 3)):  # swap 0-2 words for words of the same leaf
            if len(words) > 2:
                words[1 + int(rng.integers(len(words) - 1))] = pool[int(rng.integers(len(pool)))]
        if d[2] < 0.3 and len(words) > 3:
            del words[1 + int(d[3] * (len(words) - 1))]
        if d[4] < 0.4:
            words.append(PACKS[int(d[5] * len(PACKS))])
        out.append(" ".join(words))
    return out


def queries(n: int, seed: int = 1) -> list[str]:
    cat = _catalogue()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        _top, _leaf, brand, words = cat[int(rng.integers(len(cat)))]
        content = [w for w in words[1:] if w.isalpha() and len(w) > 2] or words
        k = int(rng.integers(2, 5))
        start = int(rng.integers(max(1, len(content) - k + 1)))
        q = content[start : start + k]
        if rng.random() < 0.25 and brand:
            q.insert(0, brand)
        out.append(" ".join(q).lower())
    return out


def _encoder(threads: int | None = None):  # type: ignore[no-untyped-def]
    from ctir_es.encoders import OnnxTextEncoder
    from ctir_es.encoders.models import default_models_dir

    return OnnxTextEncoder(default_models_dir() / "all-MiniLM-L6-v2").load()


def load(n: int, n_queries: int = 1000, *, batch: int = 256, verbose: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(documents n x 384, queries n_queries x 384), float32 unit vectors; encoded once, then cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    doc_path, q_path = CACHE / f"minilm-titles-{n}.npy", CACHE / f"minilm-queries-{n_queries}.npy"
    if not q_path.exists():
        q = np.asarray(_encoder().encode_queries(queries(n_queries)), dtype=np.float32)
        np.save(q_path, q)
    larger = sorted((m, p) for p in CACHE.glob("minilm-titles-*.npy") for m in [int(p.stem.rsplit("-", 1)[1])] if m > n)
    if not doc_path.exists() and larger:  # a smaller set is a prefix of a larger one (same seed)
        return np.load(larger[0][1], mmap_mode="r")[:n], np.load(q_path)
    if not doc_path.exists():
        # a smaller cached set is a prefix of a larger one (same seed): encode only the rest
        smaller = sorted((int(p.stem.rsplit("-", 1)[1]), p) for p in CACHE.glob("minilm-titles-*.npy"))
        have = [a for m, p in smaller if m < n for a in [np.load(p)]][-1:] or [np.zeros((0, 384), np.float32)]
        done = have[0]
        texts = titles(n)[len(done):]
        enc = _encoder()
        parts = [done]
        t = time.perf_counter()
        for s in range(0, len(texts), batch):
            parts.append(np.asarray(enc.encode_documents(texts[s : s + batch]), dtype=np.float32))
            if verbose and (s // batch) % 40 == 0:
                rate = (s + batch) / (time.perf_counter() - t)
                print(f"  encoded {len(done) + s + batch:,}/{n:,} ({rate:.0f} titles/s)", file=sys.stderr)
        tmp = doc_path.with_suffix(".tmp.npy")
        np.save(tmp, np.concatenate(parts))
        os.replace(tmp, doc_path)
    return np.load(doc_path, mmap_mode="r"), np.load(q_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--show", type=int, default=0, help="print this many synthesised titles and queries")
    args = parser.parse_args()
    if args.show:
        print("\n".join(titles(args.show)))
        print("--")
        print("\n".join(queries(args.show)))
        return
    docs, qs = load(args.n, args.queries, verbose=True)
    print(f"{docs.shape[0]:,} title vectors, {qs.shape[0]:,} query vectors in {CACHE}")


if __name__ == "__main__":
    main()
