"""The contract suite itself (tests/store_contract*.py): one mixin per optional capability, and
a store that lacks capabilities passes what ``Store`` requires while its capability cases skip
with a reason naming the store and the capability (never a silent pass)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from store_contract import CAPABILITY_CONTRACTS, RequiredContract, StoreContract, require

from ctir_es.store.base import CAPABILITIES, Store, VectorReader
from ctir_es.store.embedded import EmbeddedStore


class BareStore:
    """Only the ``Store`` protocol of an embedded store: none of the optional capabilities."""

    def __init__(self, inner: EmbeddedStore) -> None:
        self._inner = inner

    def setup(self, schema: Any) -> Any:
        return self._inner.setup(schema)

    def schema(self) -> Any:
        return self._inner.schema()

    def upsert(self, docs: Sequence[Any], checkpoint: tuple[str, int] | None = None) -> Any:
        return self._inner.upsert(docs, checkpoint)

    def checkpoint(self, key: str) -> int | None:
        return self._inner.checkpoint(key)

    def clear_checkpoint(self, key: str) -> None:
        self._inner.clear_checkpoint(key)

    def search(
        self, lexical: Any, vectors: Sequence[Any], k: int, filters: Sequence[Any] = ()
    ) -> Any:
        return self._inner.search(lexical, vectors, k, filters)

    def get(self, ids: Sequence[str]) -> Any:
        return self._inner.get(ids)

    def count(self) -> int:
        return self._inner.count()

    def stats(self) -> dict[str, Any]:
        return self._inner.stats()

    def close(self) -> None:
        self._inner.close()


LACKS = {cap: "BareStore exposes only the Store protocol" for cap in CAPABILITIES}


class TestBareStore(StoreContract):
    """The whole contract over a store with no optional capability: the required cases pass,
    the capability cases skip (pytest -rs lists them with their reasons)."""

    lacks: ClassVar[dict[type, str]] = LACKS

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[BareStore]:
        s = BareStore(EmbeddedStore(tmp_path / "store.db"))
        yield s
        s.close()


def test_every_capability_has_its_mixin_in_the_contract() -> None:
    assert set(CAPABILITY_CONTRACTS) == set(CAPABILITIES)
    for mixin in CAPABILITY_CONTRACTS.values():
        assert issubclass(StoreContract, mixin)
        assert not issubclass(RequiredContract, mixin)  # required cases never need a capability


def test_a_bare_store_is_a_store_without_capabilities(tmp_path: Path) -> None:
    store = BareStore(EmbeddedStore(tmp_path / "s.db"))
    assert isinstance(store, Store)
    assert [cap.__name__ for cap in CAPABILITIES if isinstance(store, cap)] == []
    store.close()


class _Lacking:
    lacks: ClassVar[dict[type, str]] = {VectorReader: "reasons"}


class _Silent:
    lacks: ClassVar[dict[type, str]] = {}


def test_require_skips_a_listed_capability_naming_the_store_and_it(tmp_path: Path) -> None:
    store = BareStore(EmbeddedStore(tmp_path / "s.db"))
    with pytest.raises(
        pytest.skip.Exception,
        match="BareStore does not declare the optional capability VectorReader: reasons",
    ):
        require(_Lacking(), store, VectorReader)
    store.close()


def test_require_fails_an_unlisted_missing_capability(tmp_path: Path) -> None:
    store = BareStore(EmbeddedStore(tmp_path / "s.db"))
    with pytest.raises(
        pytest.fail.Exception, match="BareStore does not declare .* VectorReader: implement it"
    ):
        require(_Silent(), store, VectorReader)
    store.close()


def test_require_fails_a_declared_capability_listed_as_lacking(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s.db")
    assert require(_Silent(), store, VectorReader) is store
    with pytest.raises(
        pytest.fail.Exception, match="EmbeddedStore declares VectorReader, yet _Lacking.lacks"
    ):
        require(_Lacking(), store, VectorReader)
    store.close()


def test_every_capability_case_of_a_bare_store_skips(tmp_path: Path) -> None:
    """Each capability mixin's cases, called on a BareStore that lists what it lacks, skip (a
    case that ran on without its capability would fail on the missing method instead)."""
    contract = TestBareStore()
    for mixin in CAPABILITY_CONTRACTS.values():
        cases = [name for name in vars(mixin) if name.startswith("test_")]
        assert cases, mixin
        for name in cases:
            store = BareStore(EmbeddedStore(tmp_path / f"{name}.db"))
            with pytest.raises(
                pytest.skip.Exception,
                match=f"BareStore does not declare .*{mixin.capability.__name__}",
            ):
                getattr(contract, name)(store)
            store.close()
