"""The validated product record that every catalogue reader yields and every store indexes.

A category path is a tuple of level names, root first: ``("Kitchen & Dining", "Cookware")``.
Its display and query form joins the levels with ``" > "``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRecord

CategoryPath = tuple[str, ...]

PATH_SEPARATOR = " > "
# Separators a shop may type or a catalogue may store: "A > B", "A >> B", "A/B" is NOT one
# (slashes occur inside category names such as "Cases & Covers/Sleeves").
_SPLIT = re.compile(r"\s*>>?\s*")

# Limits that keep one hostile record from exhausting memory or the index.
MAX_ID_CHARS = 512
MAX_TITLE_CHARS = 2_000
MAX_DESCRIPTION_CHARS = 20_000
MAX_LEVEL_CHARS = 200
MAX_PATH_DEPTH = 32
MAX_PATHS = 64
MAX_ATTRIBUTES = 200
MAX_ATTRIBUTE_CHARS = 2_000
MAX_IMAGES = 32


def parse_category_path(text: str) -> CategoryPath:
    """``"Kitchen > Blenders"`` (or ``>>``) -> ``("Kitchen", "Blenders")``; empty levels dropped."""
    return tuple(level for level in (p.strip() for p in _SPLIT.split(text)) if level)


def looks_like_category_path(text: str) -> bool:
    """A query holding a path separator is a category query by default."""
    return len(parse_category_path(text)) > 1 and bool(_SPLIT.search(text))


def format_category_path(path: Iterable[str]) -> str:
    return PATH_SEPARATOR.join(path)


def path_prefixes(path: CategoryPath) -> list[CategoryPath]:
    """Every ancestor of ``path`` and the path itself, root first (the subtree keys)."""
    return [path[: i + 1] for i in range(len(path))]


def _clean_text(value: Any, name: str, limit: int) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidRecord("bad_type", f"{name} must be a string, got {type(value).__name__}")
    text = " ".join(value.split())  # collapse whitespace and control newlines
    return text[:limit]


def _clean_path(raw: Any) -> CategoryPath:
    if isinstance(raw, str):
        levels: Iterable[Any] = parse_category_path(raw)
    elif isinstance(raw, (list, tuple)):
        levels = raw
    else:
        raise InvalidRecord("bad_category", f"a category path must be a list, got {type(raw).__name__}")
    if len(levels) > MAX_PATH_DEPTH:  # type: ignore[arg-type]
        raise InvalidRecord("bad_category", f"category path deeper than {MAX_PATH_DEPTH} levels")
    out = []
    for level in levels:
        if not isinstance(level, str):
            raise InvalidRecord("bad_category", "category levels must be strings")
        level = " ".join(level.split())[:MAX_LEVEL_CHARS]
        if level:
            out.append(level)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Product:
    """One catalogue item. Only ``id`` and ``title`` are required."""

    id: str
    title: str
    categories: tuple[CategoryPath, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    images: tuple[str, ...] = ()
    market: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Product:
        """Validate a generic-JSONL-shaped mapping; unknown keys are ignored.

        Raises ``InvalidRecord`` with a stable ``reason`` code on bad input.
        """
        if not isinstance(data, Mapping):
            raise InvalidRecord("not_an_object", f"expected an object, got {type(data).__name__}")
        raw_id = data.get("id")
        if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
            raise InvalidRecord("missing_id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            raise InvalidRecord("bad_type", f"id must be a string, got {type(raw_id).__name__}")
        pid = str(raw_id).strip()
        if len(pid) > MAX_ID_CHARS:
            raise InvalidRecord("bad_id", f"id longer than {MAX_ID_CHARS} characters")
        title = _clean_text(data.get("title"), "title", MAX_TITLE_CHARS)
        if not title:
            raise InvalidRecord("missing_title", f"product {pid!r} has no title")

        raw_cats = data.get("categories") or []
        if isinstance(raw_cats, str) or (
            isinstance(raw_cats, (list, tuple)) and raw_cats and all(isinstance(c, str) for c in raw_cats)
        ):
            raw_cats = [raw_cats]  # a single path given as a string or a flat list of levels
        if not isinstance(raw_cats, (list, tuple)):
            raise InvalidRecord("bad_category", "categories must be a list of paths")
        paths: list[CategoryPath] = []
        for raw in raw_cats[:MAX_PATHS]:
            path = _clean_path(raw)
            if path and path not in paths:
                paths.append(path)

        raw_attrs = data.get("attributes") or {}
        if not isinstance(raw_attrs, Mapping):
            raise InvalidRecord("bad_type", "attributes must be an object")
        attributes: dict[str, str] = {}
        for key, value in list(raw_attrs.items())[:MAX_ATTRIBUTES]:
            if isinstance(value, (list, tuple)):
                value = ", ".join(str(v) for v in value if v is not None)
            name = " ".join(str(key).split())[:MAX_LEVEL_CHARS]
            text = _clean_text(value, f"attribute {name!r}", MAX_ATTRIBUTE_CHARS) if value is not None else ""
            if name and text:
                attributes[name] = text

        raw_images = data.get("images") or []
        if isinstance(raw_images, str):
            raw_images = [raw_images]
        if not isinstance(raw_images, (list, tuple)):
            raise InvalidRecord("bad_type", "images must be a list of paths or URLs")
        images = tuple(i.strip() for i in raw_images[:MAX_IMAGES] if isinstance(i, str) and i.strip())

        market = data.get("market")
        return cls(
            id=pid,
            title=title,
            categories=tuple(paths),
            attributes=attributes,
            description=_clean_text(data.get("description"), "description", MAX_DESCRIPTION_CHARS),
            images=images,
            market=str(market).strip().lower() or None if market else None,
        )

    def to_json(self) -> dict[str, Any]:
        """The generic JSONL form (round-trips through ``from_mapping``)."""
        return {
            "id": self.id,
            "title": self.title,
            "categories": [list(p) for p in self.categories],
            "attributes": dict(self.attributes),
            "description": self.description,
            "images": list(self.images),
            "market": self.market,
        }

    @property
    def category_texts(self) -> list[str]:
        return [format_category_path(p) for p in self.categories]

    @property
    def attribute_text(self) -> str:
        return " ; ".join(f"{k}: {v}" for k, v in self.attributes.items())
