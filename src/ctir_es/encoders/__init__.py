"""Text and image encoders. Importing this package does not import PyTorch: the model
libraries load inside the encoders, on first use (see ``_torch``)."""

from .base import ImageEncoder, TextEncoder, l2_normalise
from .clip import OpenClipEncoder
from .registry import (
    EncoderConfig,
    config_from_manifest,
    load_image_encoder,
    load_text_encoder,
    try_load_image_encoder,
)
from .sentence import SentenceTextEncoder

__all__ = [
    "EncoderConfig",
    "ImageEncoder",
    "OpenClipEncoder",
    "SentenceTextEncoder",
    "TextEncoder",
    "config_from_manifest",
    "l2_normalise",
    "load_image_encoder",
    "load_text_encoder",
    "try_load_image_encoder",
]
