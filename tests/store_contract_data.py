"""What the store contract mixins share: the test catalogues, a few helpers, and ``require``,
which lets a mixin of an optional capability run only on a store that declares it.

A contract class composed for one store lists the capabilities that store does NOT declare in
``lacks`` (capability -> why). A capability test then skips with a reason naming the store and
the capability; a store that neither declares a capability nor lists it fails instead, so a
missing capability is never a silent pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pytest

from ctir_es.filters import Filter, check_filters
from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, LexicalQuery, VectorField, VectorQuery
from ctir_es.store.base import Store
from ctir_es.values import ValueSpec

DIMS = 8
SCHEMA = IndexSchema(
    {"title_vector": VectorField(DIMS, "cosine", {"id": "test-encoder@1", "dims": DIMS})}
)


def unit(*hot: int) -> np.ndarray:
    v = np.full(DIMS, 0.01, dtype=np.float32)
    for i in hot:
        v[i] = 1.0
    return v / np.linalg.norm(v)


def product(pid: str, title: str, path: tuple[str, ...], **kw: object) -> Product:
    return Product(id=pid, title=title, categories=(path,), **kw)  # type: ignore[arg-type]


CATALOGUE = [
    Document(
        product(
            "p1",
            "Prestige stainless steel pressure cooker",
            ("Kitchen & Dining", "Cookware", "Pressure Cookers"),
            attributes={"Brand": "Prestige", "Material": "Steel"},
            market="in",
        ),
        {"title_vector": unit(0)},
        "img/p1.jpg",
    ),
    Document(
        product(
            "p2",
            "Non-stick frying pan 24 cm",
            ("Kitchen & Dining", "Cookware", "Pans"),
            attributes={"Brand": "Hawkins"},
            market="in",
        ),
        {"title_vector": unit(0, 1)},
        "img/p2.jpg",
    ),
    Document(
        product(
            "p3",
            "Philips hand blender 250 W",
            ("Kitchen & Dining", "Kitchen Appliances", "Blenders"),
            market="us",
        ),
        {"title_vector": unit(2)},
        None,
    ),
    Document(
        product(
            "p4",
            "Titan analog wrist watch for men",
            ("Watches", "Wrist Watches"),
            market="in",
            description="a steel strap watch",
        ),
        {"title_vector": unit(5)},
        "img/p4.jpg",
    ),
    Document(
        product(
            "p5", "Cotton bath towel set", ("Home Furnishing", "Bath Linen", "Towels"), market="us"
        ),
        {"title_vector": unit(6)},
        "img/p5.jpg",
    ),
]


def ids(hits: list) -> list[str]:
    return [h.id for h in hits]


# ------------------------------------------------------------------- optional capabilities


def require(contract: object, store: Store, capability: type) -> Any:
    """``store`` when it declares ``capability`` (an ``isinstance``-checkable Protocol of
    ``store.base``); else skip when the contract class lists it in ``lacks``, and fail when it
    does not (a store must say which capabilities it lacks)."""
    name, cap = type(store).__name__, capability.__name__
    lacks: Mapping[type, str] = getattr(contract, "lacks", {})
    declared = isinstance(store, capability)
    if capability in lacks:
        if declared:
            pytest.fail(
                f"{name} declares {cap}, yet {type(contract).__name__}.lacks lists it: remove it from lacks"
            )
        pytest.skip(f"{name} does not declare the optional capability {cap}: {lacks[capability]}")
    if not declared:
        pytest.fail(
            f"{name} does not declare the optional capability {cap}: implement it, or list it in "
            f"{type(contract).__name__}.lacks with the reason, so its tests skip"
        )
    return store


class ContractBase:
    """What every mixin may use: the store under test (the subclass's ``store`` fixture: a
    fresh, empty Store), that store loaded with ``CATALOGUE``, and ``lacks``."""

    lacks: ClassVar[
        Mapping[type, str]
    ] = {}  # optional capabilities this store does not declare, and why

    @pytest.fixture
    def loaded(self, store: Store) -> Store:
        store.setup(SCHEMA)
        result = store.upsert(CATALOGUE)
        assert result.written == len(CATALOGUE) and not result.errors
        return store


# ------------------------------------------------------------------- typed values (issue 23)

# Stores whose value support lands later: their value cases are expected to fail (strict: an
# unexpected pass fails too, so the marker goes once the support is there).
VALUES_PENDING: dict[str, str] = {}

VALUES_SCHEMA = IndexSchema(
    SCHEMA.vectors,
    {
        "brand": ValueSpec("keyword"),
        "price": ValueSpec("number", "INR"),
        "in_stock": ValueSpec("boolean"),
        "rating": ValueSpec("number"),
    },
)


def valued_product(pid: str, title: str, path: tuple[str, ...], **values: object) -> Product:
    return Product(id=pid, title=f"{title} speaker", categories=(path,), values=values)  # type: ignore[arg-type]


AUDIO = ("Electronics", "Audio")
VALUED = [
    Document(
        valued_product("v1", "Sony", AUDIO, brand="Sony", price=899.0, in_stock=True, rating=4.5),
        {"title_vector": unit(0)},
    ),
    Document(
        valued_product("v2", "Sony", AUDIO, brand="SONY", price=1999.0, in_stock=False, rating=3.0),
        {"title_vector": unit(0, 1)},
    ),
    Document(
        valued_product("v3", "Bose", AUDIO, brand="BOSE", price=500.0, in_stock=True),
        {"title_vector": unit(1)},
    ),
    Document(
        valued_product("v4", "Bose", AUDIO, brand="Bose", price=2500.0, in_stock=False),
        {"title_vector": unit(2)},
    ),
    Document(
        valued_product("v5", "No-name", AUDIO, price=120.0, in_stock=True),
        {"title_vector": unit(3)},
    ),
    Document(valued_product("v6", "Bare", AUDIO), {"title_vector": unit(4)}),
    Document(
        valued_product("v7", "Sony", ("Electronics", "Cameras"), brand="sony"),
        {"title_vector": unit(5)},
    ),
]


def typed(*filters: Filter) -> list[Filter]:
    """Filters as ``Search`` hands them to a store: checked and typed against the schema."""
    return check_filters(list(filters), VALUES_SCHEMA)


def knn(store: Store, *filters: Filter) -> list:
    return store.search(None, [VectorQuery("title_vector", unit(0))], 20, filters)["title_vector"]


def bm25(store: Store, *filters: Filter) -> list:
    return store.search(LexicalQuery("speaker"), [], 20, filters)["bm25"]
