"""What an ingest did: counts, rejections by reason (with where and why), missing images."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# How many individual rejections are kept with their location; counts are always complete.
MAX_KEPT_EXAMPLES = 200
# notes[...] keys of the text rules in products.py (ingest/readers/_parse.build counts them)
ID_RESPELLED = "id trimmed or Unicode-normalised (NFC)"
MERGED_AFTER_NORMALISING = "records merged: ids equal only after trimming / NFC"


@dataclass(frozen=True, slots=True)
class Rejection:
    location: str  # "file.jsonl:17" or "products.csv row 42"
    reason: str  # stable code, e.g. "invalid_json", "missing_title", "unsafe_literal"
    detail: str = ""


@dataclass
class IngestReport:
    """Filled by readers (read / rejected), image fetching and the pipeline (indexed)."""

    source: str = ""
    read: int = 0  # records seen, good or bad
    indexed: int = 0
    skipped_resumed: int = 0  # records already committed by an earlier, interrupted run
    duplicates: int = 0  # ids seen more than once in this source (the last one wins)
    rejected: Counter[str] = field(default_factory=Counter)
    rejections: list[Rejection] = field(default_factory=list)
    images_missing: Counter[str] = field(default_factory=Counter)  # reason -> count
    image_examples: list[Rejection] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)  # e.g. "dropped truncated category level"
    messages: list[str] = field(default_factory=list)  # one-line notices (text-only mode, ...)
    # ids a reader trimmed or NFC-normalised: a duplicate among them is a merge the catalogue did
    # not spell (the pipeline notes it); not part of the JSON report
    respelled_ids: set[str] = field(default_factory=set, repr=False)

    def reject(self, location: str, reason: str, detail: str = "") -> None:
        self.rejected[reason] += 1
        if len(self.rejections) < MAX_KEPT_EXAMPLES:
            self.rejections.append(Rejection(location, reason, detail[:300]))

    def image_missing(self, product_id: str, reason: str, detail: str = "") -> None:
        self.images_missing[reason] += 1
        if len(self.image_examples) < MAX_KEPT_EXAMPLES:
            self.image_examples.append(Rejection(product_id, reason, detail[:300]))

    def note(self, what: str, n: int = 1) -> None:
        self.notes[what] += n

    def message(self, text: str) -> None:
        if text not in self.messages:
            self.messages.append(text)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def images_missing_total(self) -> int:
        return sum(self.images_missing.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "read": self.read,
            "indexed": self.indexed,
            "skipped_resumed": self.skipped_resumed,
            "duplicates": self.duplicates,
            "rejected": dict(self.rejected),
            "rejected_total": self.rejected_total,
            "rejections": [_rej(r) for r in self.rejections],
            "images_missing": dict(self.images_missing),
            "images_missing_total": self.images_missing_total,
            "image_examples": [_rej(r) for r in self.image_examples],
            "notes": dict(self.notes),
            "messages": list(self.messages),
        }


def _rej(r: Rejection) -> dict[str, str]:
    return {"location": r.location, "reason": r.reason, "detail": r.detail}
