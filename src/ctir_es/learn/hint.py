"""When `ctir-es learn` pays off: the one line an ingest ends with.

Measured (docs/learning.md): on the 280-product bundled sample `learn` won (P@10 on held-out
products 16.9 against 15.5, mean of visible and hidden categories), and on flipkart-1050 too.
Nothing smaller was measured, so the line appears from ``HINT_FROM`` categorised products on,
for an index that serves no learned model yet.
"""

from __future__ import annotations

from ..store.base import CategoryCounter, IndexMetadata, Store
from .run import LEARNED_KEY

HINT_FROM = 280  # the smallest catalogue measured to gain from `learn` (the bundled sample)


def categorised_products(store: Store) -> int:
    """Products filed under some category (a product under two roots counts twice)."""
    if not isinstance(store, CategoryCounter):
        return 0
    return sum(n for node, n in store.category_counts().items() if len(node) == 1)


def learn_hint(store: Store) -> str | None:
    """The line to print after an ingest, or None (a model in use, or too few labels)."""
    if isinstance(store, IndexMetadata) and (store.get_metadata(LEARNED_KEY) or {}).get("kept"):
        return None
    labelled = categorised_products(store)
    if labelled < HINT_FROM:
        return None
    return (f"{labelled:,} products have a category: `ctir-es learn` trains a model on them and keeps it only if "
            f"it finds products by category better (it did on catalogues from {HINT_FROM} products; docs/learning.md)")
