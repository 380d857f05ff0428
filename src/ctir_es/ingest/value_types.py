"""Typing a catalogue's values at ingest: which kind each named value is, and every product's
values normalised to it.

The type of a name (``IndexSchema.values``) comes from, first to last:

1. what the index already holds: an index keeps the types it was built with
   (``IndexSchema.merged``); a config override that contradicts it is an error, a reader's
   declaration that does is reported and the index's type kept;
2. the config's ``[values]`` table (``Settings.value_types``);
3. the reader's declared specs (``readers.declared_specs(format, market)``);
4. inference (``values.infer_specs``) over the values of the first ``INFER_SAMPLE`` products
   of the run (the pipeline streams: it reads that many ahead once); a name first seen later
   is inferred from the write batch it first appears in.

A name is added to the index's schema when a product of the run carries it. A value that does
not fit its type is dropped from that product (the product is kept) and counted in the report's
notes (``dropped value price (not_a_number)``). An index holds at most ``MAX_INDEX_VALUES``
names (each is a typed field on Elasticsearch, where a mapping has a field limit); values of
names past it are dropped and counted (``dropped value (too_many_names)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from ..errors import BadValue, ConfigError
from ..products import Product
from ..values import Value, ValueSpec, infer_specs, normalise
from .report import IngestReport

INFER_SAMPLE = 1000  # products read ahead to infer the types of the names not typed otherwise
MAX_INDEX_VALUES = 256
TOO_MANY_NOTE = "dropped value (too_many_names)"


def _shown(spec: ValueSpec) -> str:
    return f"{spec.kind} ({spec.unit})" if spec.unit else spec.kind


@dataclasses.dataclass
class ValueTyper:
    """The types of one ingest run's values (module doc) and the normalising of each product."""

    overrides: Mapping[str, ValueSpec] = dataclasses.field(default_factory=dict)
    declared: Mapping[str, ValueSpec] = dataclasses.field(default_factory=dict)
    source: str = "the reader"  # who declared ``declared`` (for messages)
    specs: dict[str, ValueSpec] = dataclasses.field(default_factory=dict)

    def start(self, held: Mapping[str, ValueSpec], report: IngestReport) -> None:
        """Begin with the types the index holds; a config override that contradicts one is a
        ``ConfigError`` (the index's values were normalised to it)."""
        self.specs = dict(held)
        for name, spec in self.overrides.items():
            mine = held.get(name)
            if mine is not None and mine != spec:
                raise ConfigError(
                    f"the config types value {name!r} as {_shown(spec)}, but this index holds it as {_shown(mine)}: "
                    "an index keeps the types it was built with; drop the setting or ingest into a new store")
        for name, spec in self.declared.items():
            mine = held.get(name)
            if mine is not None and mine != spec and name not in self.overrides:
                report.message(f"value {name!r}: {self.source} declares {_shown(spec)}, this index holds "
                               f"{_shown(mine)}; typed as the index holds it")

    def learn(self, products: Iterable[Product]) -> dict[str, ValueSpec]:
        """Types for the names of ``products`` not typed yet (config, then reader, then inferred
        from these products' values); they join ``specs``. Returns the new ones."""
        samples: dict[str, list[Value]] = {}
        for product in products:
            for name, value in product.values.items():
                if name not in self.specs:
                    samples.setdefault(name, []).append(value)
        if not samples:
            return {}
        room = MAX_INDEX_VALUES - len(self.specs)
        names = sorted(samples)[: max(room, 0)]  # sorted: the same names whatever the order read
        fixed = {n: spec for n in names if (spec := self.overrides.get(n) or self.declared.get(n)) is not None}
        inferred = infer_specs({n: samples[n] for n in names if n not in fixed})
        new = {n: fixed.get(n) or inferred[n] for n in names}
        self.specs.update(new)
        return new

    def apply(self, product: Product, report: IngestReport) -> Product:
        """``product`` with its values normalised to ``specs``; a value that does not fit is
        dropped and counted (its name spelled out: names are bounded by MAX_INDEX_VALUES)."""
        if not product.values:
            return product
        kept: dict[str, Value] = {}
        changed = False
        for name, value in product.values.items():
            spec = self.specs.get(name)
            if spec is None:
                self._drop(report, product.id, TOO_MANY_NOTE, f"{name!r}: the index holds {MAX_INDEX_VALUES} "
                                                              "value names already")
                changed = True
                continue
            try:
                typed = normalise(value, spec, product.market)
            except BadValue as exc:
                self._drop(report, product.id, f"dropped value {name} ({exc.reason})", f"{name!r}: {exc.detail or exc.reason}")
                changed = True
                continue
            changed = changed or typed != value or type(typed) is not type(value)
            kept[name] = typed
        return dataclasses.replace(product, values=kept) if changed else product

    @staticmethod
    def _drop(report: IngestReport, pid: str, note: str, detail: str) -> None:
        if note not in report.notes:
            report.message(f"product {pid[:200]!r}: dropped value {detail}; the product is kept, further ones are "
                           f"counted in notes[{note!r}]")
        report.note(note)

