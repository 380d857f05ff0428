"""The validated product record that every catalogue reader yields and every store indexes.

A category path is a tuple of level names, root first: ``("Kitchen & Dining", "Cookware")``.
Its display and query form joins the levels with ``" > "``.

Escaping (one rule for readers, filters, the tree and the page): in the text form, levels
are separated by ``>`` (or ``>>``) with any spaces around it. A ``>`` that belongs to a
level's name is written ``\\>`` and a backslash ``\\\\``; ``format_category_path`` writes
them so, and ``parse_category_path`` reads them back, so every stored level, whatever it
holds, is reachable by ``--within`` and ``/search?within=`` with the label the tree shows.

``values`` are the typed facts a shop filters, facets and sorts on (``values.py``): JSON
numbers become floats, booleans stay booleans, text stays text until ingest types it against
the index's specs. ``from_mapping`` is strict about them (a bad one rejects the record as
``bad_value``); the readers clean them first (``values.clean_values``), so there a bad value
is dropped and counted and the product kept.

Every string of a record is checked once, here: a lone surrogate (``"\\ud800"`` from a
JSON escape, or undecodable bytes) rejects the record as ``invalid_unicode`` (no later
stage - encoders, SQLite, JSON output - could take it), and control characters (NUL, ...)
become spaces, like newlines and tabs. Ids and category levels are Unicode-normalised (NFC)
and trimmed, so two spellings of one name are one product or one category node.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRecord
from .values import Value, clean_values

CategoryPath = tuple[str, ...]

PATH_SEPARATOR = " > "
# Separators a shop may type or a catalogue may store: "A > B", "A >> B", "A/B" is NOT one
# (slashes occur inside category names such as "Cases & Covers/Sleeves").
_ESCAPABLE = "\\>"
_SURROGATE = re.compile("[\ud800-\udfff]")
# C0/C1 control characters that str.split() does not already treat as whitespace.
_CONTROLS = dict.fromkeys((c for c in [*range(0x20), *range(0x7F, 0xA0)] if not chr(c).isspace()), " ")

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
    """``"Kitchen > Blenders"`` (or ``>>``) -> ``("Kitchen", "Blenders")``; empty levels dropped;
    ``\\>`` and ``\\\\`` are a literal ``>`` and backslash inside a level."""
    levels: list[str] = []
    current: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and text[i + 1] in _ESCAPABLE:
            current.append(text[i + 1])
            i += 2
        elif char == ">":
            levels.append("".join(current))
            current = []
            i += 2 if text.startswith(">", i + 1) else 1
        else:
            current.append(char)
            i += 1
    levels.append("".join(current))
    return tuple(level for level in (p.strip() for p in levels) if level)


def looks_like_category_path(text: str) -> bool:
    """A query holding a path separator is a category query by default."""
    return len(parse_category_path(text)) > 1


def escape_level(level: str) -> str:
    """A level name in the text form: ``\\`` and ``>`` escaped with a backslash."""
    return level.replace("\\", "\\\\").replace(">", "\\>")


def format_category_path(path: Iterable[str]) -> str:
    return PATH_SEPARATOR.join(escape_level(level) for level in path)


def has_surrogate(text: str) -> bool:
    """True for text no UTF-8 encoder accepts: undecodable bytes kept as surrogates, ``\\ud800``."""
    return _SURROGATE.search(text) is not None


def check_unicode(text: str, name: str) -> str:
    """``text`` unchanged, or ``InvalidRecord("invalid_unicode")`` when it holds a lone surrogate."""
    found = _SURROGATE.search(text)
    if found:
        raise InvalidRecord(
            "invalid_unicode",
            f"{name} holds a lone surrogate U+{ord(found.group()):04X} at character {found.start()} "
            "(a broken \\uXXXX escape or undecodable bytes)",
        )
    return text


def clean_line(text: str, name: str, limit: int) -> str:
    """Valid Unicode (else ``invalid_unicode``), control characters and runs of whitespace
    collapsed to one space, cut to ``limit`` characters."""
    return " ".join(check_unicode(text, name).translate(_CONTROLS).split())[:limit]


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
    return clean_line(value, name, limit)


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
        # NFC: a level spelled with combining marks is the same node as the precomposed one
        level = clean_line(unicodedata.normalize("NFC", check_unicode(level, "category level")),
                           "category level", MAX_LEVEL_CHARS)
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
    values: Mapping[str, Value] = field(default_factory=dict)

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
        # one id, one spelling: NFC ("é" precomposed or not) and no surrounding whitespace
        pid = unicodedata.normalize("NFC", check_unicode(str(raw_id), "id")).strip()
        if len(pid) > MAX_ID_CHARS:
            raise InvalidRecord("bad_id", f"id longer than {MAX_ID_CHARS} characters")
        if pid in (".", "..") or pid != pid.translate(_CONTROLS):
            # "." and ".." are dot segments every HTTP client folds away: /products/.. is "/".
            raise InvalidRecord("bad_id", f"id {pid!r} is a dot segment or holds control characters")
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
            name = clean_line(str(key), "attribute name", MAX_LEVEL_CHARS)
            text = _clean_text(value, f"attribute {name!r}", MAX_ATTRIBUTE_CHARS) if value is not None else ""
            if name and text:
                attributes[name] = text

        raw_images = data.get("images") or []
        if isinstance(raw_images, str):
            raw_images = [raw_images]
        if not isinstance(raw_images, (list, tuple)):
            raise InvalidRecord("bad_type", "images must be a list of paths or URLs")
        images = tuple(check_unicode(i, "image reference").strip()
                       for i in raw_images[:MAX_IMAGES] if isinstance(i, str) and i.strip())

        raw_values = data.get("values") or {}
        if not isinstance(raw_values, Mapping):
            raise InvalidRecord("bad_type", "values must be an object of name -> text, number or boolean")
        values, refused = clean_values(raw_values)
        if refused:
            name, exc = refused[0]
            raise InvalidRecord("bad_value", f"value {name!r} of product {pid!r}: {exc}")

        market = data.get("market")
        market = clean_line(str(market), "market", MAX_LEVEL_CHARS) if market else None
        return cls(
            id=pid,
            title=title,
            categories=tuple(paths),
            attributes=attributes,
            description=_clean_text(data.get("description"), "description", MAX_DESCRIPTION_CHARS),
            images=images,
            market=market.lower() or None if market else None,
            values=values,
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
            "values": dict(self.values),
        }

    @property
    def category_texts(self) -> list[str]:
        return [format_category_path(p) for p in self.categories]

    @property
    def attribute_text(self) -> str:
        return " ; ".join([f"{k}: {v}" for k, v in self.attributes.items()])
