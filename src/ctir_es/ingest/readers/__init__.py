"""Catalogue readers: each yields validated ``Product``s and records every rejection.

A reader is ``(source, report, **options) -> Iterator[Product]``; ``READERS`` maps the
``--format`` names to them (and its keys produce the "supported: ..." error text).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ...errors import ConfigError
from ...products import Product
from .flipkart import read_flipkart
from .jsonl import read_jsonl
from .xmarket import read_xmarket

Reader = Callable[..., Iterator[Product]]

READERS: dict[str, Reader] = {
    "jsonl": read_jsonl,
    "xmarket": read_xmarket,
    "flipkart": read_flipkart,
}


def get_reader(name: str) -> Reader:
    """The reader registered as ``name``; a ``ConfigError`` lists the supported ones."""
    try:
        return READERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown catalogue format {name!r}; supported: {', '.join(READERS)}"
        ) from None


__all__ = ["READERS", "Reader", "get_reader", "read_flipkart", "read_jsonl", "read_xmarket"]
