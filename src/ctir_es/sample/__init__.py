"""The bundled demo catalogue: ~280 Flipkart products with thumbnails (see README.md here)."""

from __future__ import annotations

from pathlib import Path


def sample_path() -> Path:
    """Path of the sample's generic JSONL file (its ``images/`` folder sits beside it)."""
    return Path(__file__).resolve().parent / "products.jsonl"
