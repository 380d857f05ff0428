"""The contract every Store implementation meets, as one mixin per capability (the pattern of
haystack's ``testing/document_store.py``).

An implementation's test module subclasses ``StoreContract`` (every mixin below) and supplies a
``store`` fixture: a fresh, empty store. The embedded store runs it in ``test_store_embedded*``,
Elasticsearch in ``test_es_store`` (a real node: ``CTIR_ES_TEST_URL``).

- What ``store.base.Store`` requires, always run (``store_contract_core``): ``CoreContract``,
  ``LexicalContract``, ``KnnContract``, ``FilterContract``, ``ValueFilterContract``.
- Through ``Search`` over the store, what a shop asks (issue 23): ``CursorContract`` (stable
  pages, ``store_contract_cursors``), ``FacetContract``, ``SortContract``, ``CollapseContract``
  (``store_contract_shop``).
- The optional capabilities of ``store.base.CAPABILITIES``, one mixin each
  (``store_contract_capabilities``). They run on a store that declares the capability; a store
  that does not lists it in its class's ``lacks`` (capability -> why), and those cases skip with
  a reason naming the store and the capability. A store that does neither fails: a missing
  capability is said, never a silent pass.

The catalogues and helpers other tests reuse (``SCHEMA``, ``CATALOGUE``, ``unit``...) are
importable from here as before.
"""

from __future__ import annotations

from store_contract_capabilities import (
    CategoryCounterContract,
    DeleterContract,
    IdListerContract,
    ImageRootsContract,
    IndexMetadataContract,
    SummaryReaderContract,
    VectorReaderContract,
    VectorWriterContract,
)
from store_contract_core import (
    CoreContract,
    FilterContract,
    KnnContract,
    LexicalContract,
    ValueFilterContract,
)
from store_contract_cursors import CursorContract
from store_contract_data import (
    AUDIO,
    CATALOGUE,
    DIMS,
    SCHEMA,
    VALUED,
    VALUES_PENDING,
    VALUES_SCHEMA,
    ContractBase,
    bm25,
    ids,
    knn,
    product,
    require,
    typed,
    unit,
    valued_product,
)
from store_contract_shop import CollapseContract, FacetContract, SortContract

from ctir_es.store.base import CAPABILITIES, Store

__all__ = [
    "AUDIO",
    "CAPABILITY_CONTRACTS",
    "CATALOGUE",
    "DIMS",
    "SCHEMA",
    "VALUED",
    "VALUES_PENDING",
    "VALUES_SCHEMA",
    "CategoryCounterContract",
    "CollapseContract",
    "ContractBase",
    "CoreContract",
    "CursorContract",
    "DeleterContract",
    "FacetContract",
    "FilterContract",
    "IdListerContract",
    "ImageRootsContract",
    "IndexMetadataContract",
    "KnnContract",
    "LexicalContract",
    "RequiredContract",
    "SortContract",
    "StoreContract",
    "SummaryReaderContract",
    "ValueFilterContract",
    "VectorReaderContract",
    "VectorWriterContract",
    "bm25",
    "ids",
    "knn",
    "product",
    "require",
    "typed",
    "unit",
    "valued_product",
]

class RequiredContract(
    CoreContract,
    LexicalContract,
    KnnContract,
    FilterContract,
    ValueFilterContract,
    CursorContract,
    FacetContract,
    SortContract,
    CollapseContract,
):
    """What every Store meets: the protocol's methods, and over them (through ``Search``) stable
    pages, facets, sort and collapse."""

    def test_says_which_optional_capabilities_it_lacks(self, store: Store) -> None:
        """Each optional capability is declared, or listed in ``lacks`` with a reason (whose
        cases then skip); nothing in ``lacks`` that the store declares, or that is no capability."""
        name = type(store).__name__
        unknown = [cap for cap in self.lacks if cap not in CAPABILITIES]
        assert unknown == [], (
            f"{type(self).__name__}.lacks names what store.base does not call a capability"
        )
        for cap in CAPABILITIES:
            declared = isinstance(store, cap)
            assert declared != (cap in self.lacks), (
                f"{name} {'declares' if declared else 'does not declare'} {cap.__name__}: "
                + (
                    "remove it from lacks"
                    if declared
                    else "implement it, or list it in lacks with a reason"
                )
            )


class StoreContract(
    RequiredContract,
    VectorReaderContract,
    CategoryCounterContract,
    DeleterContract,
    ImageRootsContract,
    IdListerContract,
    IndexMetadataContract,
    VectorWriterContract,
    SummaryReaderContract,
):
    """Subclass, provide a ``store`` fixture returning a fresh, empty Store, and list in ``lacks``
    the optional capabilities it does not declare."""


# the mixin of each optional capability, read off StoreContract's bases (a new capability in
# store.base needs its mixin there; tests/test_store_contract.py checks that every one has one)
CAPABILITY_CONTRACTS: dict[type, type] = {
    base.capability: base  # type: ignore[attr-defined]
    for base in StoreContract.__bases__
    if "capability" in vars(base)
}
