"""Category inference: which category nodes fit a product, a text or an image, and which
signals say so (``core``: pure scoring and fusion; ``engine``: the signals through the store)."""

from .core import SIGNALS, SignalReport, SuggestedCategory, Suggestion
from .engine import Categorizer, Evidence

__all__ = ["SIGNALS", "Categorizer", "Evidence", "SignalReport", "SuggestedCategory", "Suggestion"]
