"""The JSON body of ``POST /categorize``: a stored product's id, free text, or a product record.

Image references inside a JSON product are refused: the server would fetch a path or URL the
client chose. Images come as an upload (multipart ``file``) instead.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidRecord
from ..jsonsafe import loads_untrusted
from .errors import ApiError


class CategorizeIn(BaseModel):
    """Exactly one of ``id``, ``text`` or ``title`` (a product record)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="A stored product (it never votes for itself).")
    text: str | None = Field(None, description="Free text, e.g. a title.")
    title: str | None = Field(None, description="A product record's title.")
    attributes: dict[str, str] | None = Field(None, description="A product record's attributes.")
    description: str | None = Field(None, description="A product record's description.")


def categorize_input(raw: bytes, max_id_chars: int, max_text_chars: int) -> dict[str, Any]:
    """The keyword arguments of ``Search.categorize`` for a JSON body, or a 422 ``ApiError``."""
    try:  # a nesting limit before the decoder, and no lone surrogates (jsonsafe.py)
        data = loads_untrusted(raw)
    except InvalidRecord as exc:
        raise ApiError(422, "invalid_request", f"the body is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", "the body must be a JSON object")
    if "images" in data or "image" in data:
        raise ApiError(422, "invalid_request", "a JSON product cannot name an image: upload it as multipart `file`")
    try:
        body = CategorizeIn.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        raise ApiError(422, "invalid_request", f"{where}: {err.get('msg', 'invalid')}") from None
    given = [n for n in ("id", "text", "title") if getattr(body, n) is not None]
    if len(given) != 1:
        raise ApiError(422, "invalid_request", 'give exactly one of "id", "text" or "title"')
    if body.id is not None:
        if not body.id or len(body.id) > max_id_chars:
            raise ApiError(422, "invalid_request", f"id must be 1 to {max_id_chars} characters")
        return {"id": body.id}
    text = body.text if body.text is not None else body.title or ""
    if not text.strip() or len(text) > max_text_chars:
        raise ApiError(422, "invalid_request", f"the text must be 1 to {max_text_chars} characters, not blank")
    if body.text is not None:
        return {"text": body.text}
    record: dict[str, Any] = {"id": "query", "title": body.title}
    if body.attributes:
        record["attributes"] = body.attributes
    if body.description:
        record["description"] = body.description[:20_000]
    try:
        from ..products import Product

        return {"product": Product.from_mapping(record)}
    except InvalidRecord as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
