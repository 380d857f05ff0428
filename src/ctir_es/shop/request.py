"""What a shop request asks beyond relevance: facets, a sort and a collapse, checked against
the index's schema before any store work (errors name what the index holds).

The cutoffs every surface shares live here, so the CLI, HTTP and the docs state the same
numbers:

- ``CANDIDATE_CUTOFF``: facets, sort and collapse work over the fused candidates of the query
  (each source ``max(CANDIDATE_DEPTH, 2k)`` deep, fused without a limit), the best 1000 of
  them: the list the user pages through (``MAX_K`` is the deepest page);
- ``MAX_FACETS`` names per request, ``MAX_FACET_SIZE`` values per facet (default 10);
- the sort window (``ctir_es.shop.sort``) and the collapse threshold (``ctir_es.shop.collapse``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import QueryError
from ..schema import IndexSchema
from ..vocabulary import MAX_K
from .facets import CATEGORY_FACET
from .sort import RELEVANCE, SortSpec, parse_sort

CANDIDATE_CUTOFF = MAX_K  # fused candidates facets, sort and collapse see (1000)
MAX_FACETS = 10  # facet names in one request: bounded work (each may cost one more retrieval)
DEFAULT_FACET_SIZE = 10  # values (or category nodes per level) shown per facet
MAX_FACET_SIZE = 100


@dataclass(frozen=True, slots=True)
class ShopRequest:
    facets: tuple[str, ...] = ()
    facet_size: int = DEFAULT_FACET_SIZE
    sort: SortSpec | None = None  # None: relevance
    collapse: str | None = None  # "auto", a keyword value's name, or None

    @classmethod
    def of(cls, facets: Sequence[str] = (), facet_size: int | None = None, sort: str | None = None,
           collapse: str | None = None) -> ShopRequest:
        """The request as the caller gave it (names normalised, shape checked; ``checked`` types it)."""
        if isinstance(facets, str):
            facets = (facets,)
        names = tuple(dict.fromkeys(_facet_name(f) for f in facets))
        if len(names) > MAX_FACETS:
            raise QueryError(f"at most {MAX_FACETS} facets per request (got {len(names)})")
        size = DEFAULT_FACET_SIZE if facet_size is None else facet_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_FACET_SIZE:
            raise QueryError(f"facet_size must be between 1 and {MAX_FACET_SIZE}")
        spec = None
        if sort is not None and sort.strip() and sort.strip().lower() != RELEVANCE:
            spec = SortSpec(sort.strip(), "", True)  # read against the schema by checked()
        group = collapse.strip() if isinstance(collapse, str) and collapse.strip() else None
        return cls(names, size, spec, group)

    @property
    def active(self) -> bool:
        return bool(self.facets or self.sort or self.collapse)

    def checked(self, schema: IndexSchema) -> ShopRequest:
        """Every name resolved against the index's typed values."""
        if not self.active:
            return self
        values = schema.values
        for name in self.facets:
            if name != CATEGORY_FACET and name not in values:
                raise QueryError(f"unknown facet {name!r}; facets: {CATEGORY_FACET} and this index's values: "
                                 f"{_held(schema)}")
        sort = parse_sort(self.sort.text, schema) if self.sort else None
        collapse = self.collapse
        if collapse is not None and collapse != "auto":
            from ..values import value_name

            try:
                collapse = value_name(collapse)
            except Exception:  # noqa: BLE001 - any bad name is the same answer
                collapse = collapse[:60]
            spec = values.get(collapse)
            if spec is None or spec.kind != "keyword":
                keywords = ", ".join(sorted(n for n, s in values.items() if s.kind == "keyword")) or "none"
                raise QueryError(f"collapse is 'auto' or a keyword value of the index ({keywords}), "
                                 f"not {collapse!r}")
        return ShopRequest(self.facets, self.facet_size, sort, collapse)


def _facet_name(text: object) -> str:
    from ..errors import BadValue
    from ..values import value_name

    if not isinstance(text, str) or not text.strip():
        raise QueryError("a facet is a value name such as brand, price or category")
    try:
        return value_name(text)
    except BadValue as exc:
        raise QueryError(f"bad facet name {text[:60]!r}: {exc}") from None


def _held(schema: IndexSchema) -> str:
    return ", ".join(sorted(schema.values)) or "none (the catalogue carries no typed values)"
