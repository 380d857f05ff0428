"""Catalogue readers: each yields validated ``Product``s and records every rejection.

A reader is ``(source, report, **options) -> Iterator[Product]``; ``READERS`` maps the
``--format`` names to them (and its keys produce the "supported: ..." error text).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ...errors import ConfigError
from ...products import Product
from ...values import ValueSpec
from .flipkart import VALUE_SPECS as FLIPKART_SPECS
from .flipkart import read_flipkart
from .jsonl import read_jsonl
from .xmarket import read_xmarket, value_specs

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


def declared_specs(name: str, market: str | None = None) -> dict[str, ValueSpec]:
    """The types of the values reader ``name`` types itself (for XMarket, in ``market``: its
    price is in that market's currency); the rest of a catalogue's values are inferred."""
    get_reader(name)  # an unknown format is the same ConfigError
    if name == "flipkart":
        return dict(FLIPKART_SPECS)
    if name == "xmarket":
        return value_specs(market)
    return {}


__all__ = ["READERS", "Reader", "declared_specs", "get_reader", "read_flipkart", "read_jsonl", "read_xmarket"]
