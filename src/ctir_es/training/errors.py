"""Training errors (part of the ``CtirError`` family, so the CLI shows them in one line)."""

from ..errors import CtirError


class TrainingError(CtirError):
    """A training run cannot start or go on (no data, bad configuration, ...)."""
