"""``Categorizer``: the signals of category inference, run through the Store API.

It works on any index: the kNN votes need the vector fields the index has (title vectors on a
text-only index, image vectors with CLIP weights), the BM25 vote needs nothing but the text,
the zero-shot ``names`` signal needs a text encoder, and ``clip_ita`` needs a trained CLIP-ITA
model. Signals that cannot run are reported with the reason, never silently dropped.

Leakage control (evaluation, audit): ``voters`` restricts the products that may vote (e.g. the
train split) and ``exclude`` keeps the product itself out; ``labels`` is the label space of the
zero-shot signals. The input never carries its own categories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..encoders.base import CategoryEncoder, ImageEncoder, TextEncoder
from ..errors import QueryError
from ..filters import Filter
from ..products import CategoryPath, Product, format_category_path
from ..ranking.plan import CLIP_ITA_VECTOR, IMAGE_SOURCE, IMAGE_VECTOR, TEXT_SOURCE, TITLE_VECTOR
from ..schema import LexicalQuery, VectorQuery
from ..store.base import Store
from . import core

# The BM25 vote searches other products' titles, attributes and category paths with the
# input's title (other products' categories are their labels, never the input's own).
BM25_FIELDS: Mapping[str, float] = {"title": 3.0, "categories": 2.0, "attributes": 1.0}
DEFAULT_NEIGHBOURS = 30
LABEL_VOTERS = 200
# Default fusion weights: measured on flipkart-1050's validation split (docs/categories.md).
DEFAULT_WEIGHTS: Mapping[str, float] = {"title": 1.0, "image": 1.0, "bm25": 0.5, "names": 0.5, "clip_ita": 1.0}


@dataclass
class Evidence:
    """What a categorization starts from; never the categories of the thing categorized."""

    label: str
    text: str = ""  # the title (or free text): BM25 and the text encoders
    product: Product | None = None  # for CLIP-ITA's product head (title, attributes)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # field -> query vector
    exclude: tuple[str, ...] = ()  # product ids that must not vote (the product itself)


@dataclass
class SignalResult:
    scores: core.Scores
    support: dict[CategoryPath, int]
    voters: int
    note: str = ""


class Categorizer:
    """Computes every available signal for a piece of evidence."""

    def __init__(
        self,
        store: Store,
        *,
        vector_fields: Sequence[str] = (),
        text_encoder: TextEncoder | None = None,
        image_encoder: ImageEncoder | None = None,
        category_encoder: CategoryEncoder | None = None,
        labels: Sequence[CategoryPath] = (),
        temperatures: Mapping[str, float] | None = None,
    ) -> None:
        self.store = store
        self.vector_fields = set(vector_fields)
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.category_encoder = category_encoder
        self.labels = [tuple(p) for p in labels]
        self.temperatures = {**core.TEMPERATURES, **(temperatures or {})}
        self._label_vectors: dict[str, np.ndarray] = {}

    # -- availability ----------------------------------------------------------------------

    def available(self) -> dict[str, str]:
        """``{signal: ""}`` for signals that can run, ``{signal: why not}`` otherwise."""
        out = {
            "title": "" if TITLE_VECTOR in self.vector_fields else "the index has no title vectors",
            "image": "" if IMAGE_VECTOR in self.vector_fields else "the index has no image vectors (CLIP weights)",
            "bm25": "",
            "names": "" if self.text_encoder is not None and self.labels else
                     ("no text encoder" if self.text_encoder is None else "no category labels"),
            "clip_ita": "" if self.category_encoder is not None and self.labels else
                        "no trained CLIP-ITA model in this index",
        }
        return out

    def label_vectors(self, signal: str) -> np.ndarray:
        """The label space through the names encoder or CLIP-ITA's category head (cached)."""
        if signal not in self._label_vectors:
            texts = [format_category_path(p) for p in self.labels]
            if signal == "names":
                assert self.text_encoder is not None
                vecs = self.text_encoder.encode_queries(texts) if texts else np.zeros((0, self.text_encoder.dims))
            else:
                assert self.category_encoder is not None
                vecs = self.category_encoder.encode_categories(texts)
            self._label_vectors[signal] = np.asarray(vecs, dtype=np.float32)
        return self._label_vectors[signal]

    # -- evidence --------------------------------------------------------------------------

    def evidence_for_product(self, product: Product, *, image_vector: np.ndarray | None = None,
                             exclude: Sequence[str] = ()) -> Evidence:
        """A product record (or free text as a title): its vectors through the encoders."""
        vectors: dict[str, np.ndarray] = {}
        if product.title and self.text_encoder is not None:
            vectors[TITLE_VECTOR] = self.text_encoder.encode_documents([product.title])[0]
        if image_vector is not None:
            vectors[IMAGE_VECTOR] = image_vector
        if self.category_encoder is not None and product.title:
            vectors[CLIP_ITA_VECTOR] = self.category_encoder.encode_products([product], [None])[0]
        return Evidence(product.title or "(image)", product.title, product, vectors, tuple(exclude))

    # -- signals ---------------------------------------------------------------------------

    def signals(
        self,
        evidence: Evidence,
        *,
        neighbours: int = DEFAULT_NEIGHBOURS,
        voters: Sequence[Filter] = (),
        only: Sequence[str] | None = None,
    ) -> dict[str, SignalResult]:
        """Each signal's node scores; a signal without evidence gets an empty result + note."""
        if not 1 <= neighbours <= 1000:
            raise QueryError("neighbours must be between 1 and 1000")
        wanted = list(only) if only is not None else list(core.SIGNALS)
        unknown = [s for s in wanted if s not in core.SIGNALS]
        if unknown:
            raise QueryError(f"unknown signal {unknown[0]!r}; supported: {', '.join(core.SIGNALS)}")
        why_not = self.available()
        out: dict[str, SignalResult] = {}
        filters = list(voters)
        if evidence.exclude:
            filters.append(Filter("id", "not_in", tuple(evidence.exclude)))
        knn = {"title": (TITLE_VECTOR, TEXT_SOURCE), "image": (IMAGE_VECTOR, IMAGE_SOURCE)}
        queries = []
        for signal, (field_name, source) in knn.items():
            if signal not in wanted:
                continue
            if why_not[signal]:
                out[signal] = SignalResult({}, {}, 0, why_not[signal])
            elif field_name not in evidence.vectors:
                out[signal] = SignalResult({}, {}, 0, f"the input has no {field_name}")
            else:
                queries.append(VectorQuery(field_name, evidence.vectors[field_name], source))
        lexical = None
        if "bm25" in wanted:
            if evidence.text.strip():
                lexical = LexicalQuery(evidence.text, dict(BM25_FIELDS))
            else:
                out["bm25"] = SignalResult({}, {}, 0, "the input has no text")
        if lexical is not None or queries:
            lists = self.store.search(lexical, queries, neighbours, filters)
            ids = list(dict.fromkeys(h.id for hits in lists.values() for h in hits))
            stored = self.store.get(ids)
            cats = {i: d.product.categories for i, d in stored.items()}
            if lexical is not None:
                hits = [h for h in lists.get("bm25", []) if cats.get(h.id)]
                top = max((h.score for h in hits), default=0.0)
                sims = [(cats[h.id], h.score / top if top > 0 else 0.0) for h in hits]
                out["bm25"] = self._vote("bm25", sims, "" if hits else "no product shares a word with the text")
            for q in queries:
                signal = "title" if q.name == TEXT_SOURCE else "image"
                hits = [h for h in lists.get(q.name, []) if cats.get(h.id)]
                out[signal] = self._vote(signal, [(cats[h.id], h.score) for h in hits],
                                         "" if hits else "no neighbour with a category")
        for signal, field_name in (("names", TITLE_VECTOR), ("clip_ita", CLIP_ITA_VECTOR)):
            if signal not in wanted:
                continue
            if why_not[signal]:
                out[signal] = SignalResult({}, {}, 0, why_not[signal])
                continue
            vec = evidence.vectors.get(field_name)
            if vec is None:
                out[signal] = SignalResult({}, {}, 0, f"the input has no {field_name}")
                continue
            label_sims = self.label_vectors(signal) @ np.asarray(vec, dtype=np.float32)
            scores, support = core.label_vote(self.labels, label_sims, self.temperatures[signal], LABEL_VOTERS)
            out[signal] = SignalResult(scores, support, min(LABEL_VOTERS, len(self.labels)))
        return {s: out[s] for s in wanted if s in out}

    def _vote(self, signal: str, neighbours: list[tuple[Any, float]], note: str) -> SignalResult:
        scores, support = core.vote(neighbours, self.temperatures[signal]) if neighbours else ({}, {})
        return SignalResult(scores, support, len(neighbours), note)

    def suggest(
        self,
        evidence: Evidence,
        *,
        k: int = 5,
        depth: int | None = 3,
        neighbours: int = DEFAULT_NEIGHBOURS,
        voters: Sequence[Filter] = (),
        only: Sequence[str] | None = None,
        weights: Mapping[str, float] | core.SignalWeights | None = None,
    ) -> core.Suggestion:
        results = self.signals(evidence, neighbours=neighbours, voters=voters, only=only)
        used = core.SignalWeights.of(weights, DEFAULT_WEIGHTS)
        bad = [n for ws in (used.default, *used.levels.values()) for n, w in ws.items()
               if not (w >= 0 and np.isfinite(w))]
        if bad:
            raise QueryError(f"signal weight of {bad[0]} must be a finite number >= 0")
        reports = [core.SignalReport(n, r.voters, used.default.get(n, 1.0) if r.scores else 0.0, r.note)
                   for n, r in results.items()]
        return core.suggestion(evidence.label, {n: (r.scores, r.support) for n, r in results.items()},
                               used, k=k, depth=depth, reports=reports)
