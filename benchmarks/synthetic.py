"""Synthetic catalogues for the benchmarks: realistic short product titles, category paths,
attributes, and unit vectors with category structure, written through the real
``EmbeddedStore.upsert`` in large batches.

Vectors: each leaf category has a random unit centroid; a product's vector is its centroid
plus isotropic noise, L2-normalised (cosine to its centroid ~0.6). Queries are drawn the same
way. Pure uniform random vectors in 512 dims would make every cosine ~0 +- 0.04 and nearest
neighbours meaningless (and an approximate index pointless to evaluate); real embeddings
cluster by category, as these do. The exact kNN cost does not depend on the values.

Stores are cached under ``artifacts/benchmarks/stores`` by (size, dims, seed, layout version)
so a full run builds the 1M store once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, LexicalQuery, VectorField
from ctir_es.store.embedded import EmbeddedStore

FIELD = "title_vector"
NOISE = 1.2  # noise norm relative to the unit centroid -> cosine to centroid ~0.6

ROOTS = ["Home & Kitchen", "Clothing", "Electronics", "Sports & Outdoors", "Beauty", "Toys & Games",
         "Automotive", "Books", "Garden", "Office Products"]
MID = ["Accessories", "Essentials", "Storage", "Tools", "Decor", "Care", "Sets", "Parts"]
LEAF = ["Basics", "Premium", "Kids", "Travel", "Outdoor", "Compact", "Classic", "Pro"]
_SYL = ["ka", "lo", "mi", "ra", "ven", "tor", "zen", "qui", "sol", "dar", "fin", "gro", "hal", "jet", "nor",
        "pax", "ru", "sel", "tia", "vo", "wex", "yul", "bri", "cor", "dyn"]
BRANDS = [(a + b + c).capitalize() for a in _SYL[:12] for b in _SYL[12:] for c in ("", "x", "on")][:1000]
ADJ = ["classic", "compact", "portable", "premium", "slim", "heavy duty", "soft", "durable", "foldable",
       "wireless", "ergonomic", "stainless", "waterproof", "lightweight", "deluxe", "vintage"]
COLORS = ["red", "blue", "black", "white", "grey", "green", "yellow", "pink", "brown", "navy", "beige"]
MATERIALS = ["cotton", "steel", "plastic", "wooden", "leather", "ceramic", "glass", "silicone", "bamboo",
             "aluminium", "wool", "nylon"]
_NOUNS = ["towel", "kettle", "blender", "backpack", "lamp", "mug", "chair", "shirt", "sneaker", "speaker",
          "charger", "bottle", "pan", "knife", "pillow", "blanket", "watch", "helmet", "tent", "brush",
          "notebook", "pen", "jacket", "headphones", "mat", "basket", "shelf", "cable", "mirror", "vase",
          "toaster", "grinder", "cooker", "tray", "bowl", "plate", "spoon", "fork", "whisk", "ladle",
          "curtain", "rug", "sofa", "stool", "desk", "cabinet", "drawer", "hanger", "clock", "frame",
          "candle", "diffuser", "humidifier", "heater", "fan", "iron", "vacuum", "mop", "bucket", "broom",
          "drill", "hammer", "wrench", "screwdriver", "pliers", "saw", "ladder", "toolbox", "glove", "apron",
          "sock", "scarf", "belt", "wallet", "handbag", "suitcase", "sunglasses", "cap", "boot", "sandal",
          "dress", "skirt", "jeans", "hoodie", "sweater", "kurta", "saree", "pyjama", "shorts", "vest",
          "keyboard", "mouse", "monitor", "router", "webcam", "tablet", "stylus", "earbuds", "powerbank", "adapter",
          "football", "racket", "dumbbell", "yoga", "bicycle", "skates", "goggles", "jersey", "bat", "shuttlecock",
          "shampoo", "lotion", "perfume", "razor", "trimmer", "comb", "lipstick", "serum", "sunscreen", "soap",
          "puzzle", "doll", "blocks", "kite", "drone", "robot", "crayons", "easel", "globe", "abacus",
          "wiper", "seatcover", "dashcam", "polish", "jumpstarter", "tyre", "horn", "mudflap", "compressor", "organizer",
          "planter", "hose", "sprinkler", "shears", "fertilizer", "seeds", "trowel", "lantern", "birdhouse", "pot"]
PREFIXES = ["mini", "smart", "junior", "pocket", "magnetic", "eco", "baby", "pet", "bath", "wall", "car", "double"]
NOUNS = _NOUNS
SIZES = ["1 L", "500 ml", "2 pcs", "set of 4", "XL", "M", "15 inch", "10 m", "250 g", "king size"]


def leaf_paths() -> list[tuple[str, ...]]:
    return [(r, f"{r.split()[0]} {m}", f"{m} {leaf}") for r in ROOTS for m in MID for leaf in LEAF]


@dataclass(frozen=True)
class Catalogue:
    n: int
    dims: int
    seed: int = 0

    @property
    def paths(self) -> list[tuple[str, ...]]:
        return leaf_paths()

    def centroids(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed + 1_000_003 * self.dims)
        return _normalise(rng.standard_normal((len(self.paths), self.dims)).astype(np.float32))

    def leaves(self) -> np.ndarray:
        return np.random.default_rng(self.seed).integers(0, len(self.paths), self.n)

    def vectors(self, start: int, stop: int, leaves: np.ndarray, centroids: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng((self.seed, self.dims, start))
        noise = rng.standard_normal((stop - start, self.dims)).astype(np.float32)
        noise *= NOISE / np.sqrt(self.dims)
        return _normalise(centroids[leaves[start:stop]] + noise)

    def products(self, start: int, stop: int, leaves: np.ndarray) -> Iterator[Product]:
        rng = np.random.default_rng((self.seed, 7, start))
        paths = self.paths
        picks = rng.integers(0, 1 << 30, (stop - start, 8))
        for i in range(start, stop):
            b, a, c, m, s, nn, has_c, has_m = picks[i - start]
            path = paths[leaves[i]]
            noun = NOUNS[(leaves[i] * 7 + nn % 3) % len(NOUNS)]  # nouns follow the category
            if nn % 10 < 3:  # 30% carry a product-type prefix ("eco", "pocket", ...)
                noun = f"{PREFIXES[(nn // 10) % len(PREFIXES)]} {noun}"
            brand = BRANDS[_zipf(b, len(BRANDS))]
            words = [brand, ADJ[a % len(ADJ)]]
            attrs = {"Brand": brand}
            if has_c % 10 < 4:  # 40% of titles name a colour, 30% a material
                attrs["Color"] = COLORS[c % len(COLORS)]
                words.append(attrs["Color"])
            if has_m % 10 < 3:
                attrs["Material"] = MATERIALS[m % len(MATERIALS)]
                words.append(attrs["Material"])
            words += [noun, SIZES[s % len(SIZES)]]
            yield Product(id=f"p{i:07d}", title=" ".join(words), categories=(path,), attributes=attrs)

    def documents(self, batch: int = 5000) -> Iterator[list[Document]]:
        leaves, centroids = self.leaves(), self.centroids()
        for start in range(0, self.n, batch):
            stop = min(self.n, start + batch)
            vecs = self.vectors(start, stop, leaves, centroids)
            yield [Document(p, {FIELD: vecs[i]}) for i, p in enumerate(self.products(start, stop, leaves))]

    def query_vectors(self, n: int, seed: int = 99) -> np.ndarray:
        rng = np.random.default_rng((self.seed, seed))
        centroids = self.centroids()
        noise = rng.standard_normal((n, self.dims)).astype(np.float32) * (NOISE / np.sqrt(self.dims))
        return _normalise(centroids[rng.integers(0, len(centroids), n)] + noise)

    def query_texts(self, n: int, seed: int = 99) -> list[str]:
        """Short shopper queries: 2-3 catalogue words ("red cotton towel")."""
        rng = np.random.default_rng((self.seed, seed, 1))
        out = []
        for _ in range(n):
            words = [NOUNS[rng.integers(len(NOUNS))]]  # "kettle", "red kettle", "eco kettle", "steel kettle"
            extra = int(rng.integers(0, 4))
            if extra == 1:
                words.insert(0, COLORS[rng.integers(len(COLORS))])
            elif extra == 2:
                words.insert(0, PREFIXES[rng.integers(len(PREFIXES))])
            elif extra == 3:
                words.insert(0, MATERIALS[rng.integers(len(MATERIALS))])
            out.append(" ".join(words))
        return out

    def raw_bytes(self) -> dict[str, int]:
        """The raw size of what the store holds: float32 vectors + UTF-8 text (id, title,
        category path, attribute text) - the yardstick for the store-size target."""
        leaves = self.leaves()
        text = 0
        step = 50_000
        for start in range(0, self.n, step):
            for p in self.products(start, min(self.n, start + step), leaves):
                text += len(p.id.encode()) + len(p.title.encode()) + sum(len(" > ".join(c).encode()) for c in p.categories)
                text += len(p.attribute_text.encode())
        return {"vectors": self.n * self.dims * 4, "text": text}


def _zipf(draw: int, n: int) -> int:
    """A Zipf-like pick in [0, n) from a uniform integer draw (a few brands are common)."""
    u = (draw % 1_000_003) / 1_000_003
    return min(n - 1, int(n ** u) - 1)


def _normalise(m: np.ndarray) -> np.ndarray:
    return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)


STORE_LAYOUT = "v3"  # bump when the store layout changes, so cached stores are rebuilt


def build_store(cat: Catalogue, path: Path, batch: int = 5000, **store_kwargs: object) -> dict[str, float]:
    """Write ``cat`` into a fresh EmbeddedStore at ``path`` through ``upsert``; returns timings."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    store = EmbeddedStore(path, **store_kwargs)  # type: ignore[arg-type]
    start = time.perf_counter()
    store.setup(IndexSchema({FIELD: VectorField(cat.dims, "cosine", {"id": f"synthetic-{cat.dims}"})}))
    gen = upsert = 0.0
    t = time.perf_counter()
    for docs in cat.documents(batch):
        t1 = time.perf_counter()
        gen += t1 - t
        result = store.upsert(docs)
        if result.errors:
            raise RuntimeError(f"synthetic upsert rejected {len(result.errors)} products: {next(iter(result.errors.values()))}")
        t = time.perf_counter()
        upsert += t - t1
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return {"generate_s": gen, "upsert_s": upsert, "total_s": time.perf_counter() - start}


def cached_store(cat: Catalogue, root: Path, rebuild: bool = False, **store_kwargs: object) -> tuple[Path, dict[str, float] | None]:
    """A store for ``cat`` under ``root``: reused when present (timings None), built otherwise."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"synthetic-{cat.n}-{cat.dims}d-s{cat.seed}-{STORE_LAYOUT}.db"
    done = path.with_suffix(".done")
    if done.exists() and path.exists() and not rebuild:
        return path, None
    done.unlink(missing_ok=True)
    timings = build_store(cat, path, **store_kwargs)
    done.write_text("ok")
    return path, timings


def lexical(text: str) -> LexicalQuery:
    return LexicalQuery(text)
