"""Typed errors. The CLI turns them into click exceptions, the HTTP API into JSON."""


class CtirError(Exception):
    """Base class for every error ctir-es raises on purpose."""


class ConfigError(CtirError):
    """A setting is missing, malformed or contradictory."""


class ReasonedError(CtirError):
    """An error counted by a short stable ``reason`` code (reports group by it), with a detail."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class InvalidRecord(ReasonedError):
    """A catalogue record cannot become a Product."""


class BadValue(ReasonedError):
    """One typed value of a product does not fit its name or spec (a price ``"abc"``, a name
    of 500 characters). Deliberately NOT an ``InvalidRecord``: a bad value drops that value
    and is counted, never the product, so code that rejects records must not catch it."""


class SourceError(CtirError):
    """A catalogue source cannot be read at all (missing file, no network, ...)."""


class ImageError(ReasonedError):
    """An image cannot be fetched or decoded."""


class EncoderError(CtirError):
    """A model cannot be loaded or run."""


class ModelMissing(EncoderError):
    """The index names a trained model (CLIP-ITA) whose folder is gone: neither at the path the
    index recorded nor under its name in the models dir. The message says how to get it back."""


class MissingExtraError(CtirError, ImportError):
    """An optional dependency is absent; the message names the pip command."""


class StoreError(CtirError):
    """The store cannot be opened, written or queried."""


class StoreLocked(StoreError):
    """Another process is already ingesting into this store."""


class StoreCorrupted(StoreError):
    """The store file is damaged (SQLite says malformed / not a database, or the header or page
    layout is wrong): nothing a retry fixes; the message says how to rebuild it."""


class AccessDenied(StoreError):
    """The store refused this user a privilege (Elasticsearch 403 ``security_exception``):
    callers that can do without (e.g. reading the mapping) carry on with a notice."""


class LicenceRequired(StoreError):
    """The cluster's licence does not cover the feature asked for (Elasticsearch 403 with a
    ``license.expired.feature`` field, e.g. the rrf retriever on a basic licence): callers fall
    back to what the licence allows."""


class Unreachable(StoreError):
    """The store cannot be reached (connection refused or lost, time-out, TLS): nothing is
    wrong with the request; a retry once the service is back may succeed."""


class SchemaMismatch(StoreError):
    """The index was built with other encoders / dims than the ones in use now."""


class FilterError(CtirError):
    """A filter expression is malformed or uses an unknown field / operator."""


class QueryError(CtirError):
    """A query cannot be planned (empty text, unknown mode, no usable encoder, ...)."""


class NotFound(QueryError):
    """The product (or other named thing) is not in the index."""


class Unsupported(QueryError):
    """The index or store cannot answer this request (e.g. no image vectors to categorize)."""


class ServerFusionUnavailable(CtirError):
    """The store cannot fuse this hybrid query in one server round trip: ``reason`` says why
    (the cluster's version, modules or licence, the client, weights the retriever cannot
    take), or is empty when there is nothing to fuse (one source). Not a failure: the caller
    fuses the store's ``search`` runs itself, as ``Search`` does."""

    def __init__(self, method: str, reason: str = "") -> None:
        super().__init__(f"server-side {method} fusion unavailable ({reason})" if reason
                         else f"server-side {method} fusion: one source, nothing to fuse")
        self.method = method
        self.reason = reason


def one_line(exc: object, limit: int = 300) -> str:
    """An exception (or any message) as one short line: library errors often span pages.

    Whitespace runs become one space; an exception without a message gives its type name; a
    text longer than ``limit`` is cut, ending in ``...``.
    """
    text = " ".join(str(exc).split())
    if not text and isinstance(exc, BaseException):
        text = type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def described(exc: BaseException, limit: int = 200) -> str:
    """``Type: message`` on one short line, for an error from a library we do not own (a
    decoder, a transport) where the type says what failed."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {one_line(message, limit)}" if message else type(exc).__name__
