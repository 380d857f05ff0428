"""Text and image encoders. Importing this package does not import PyTorch: the default
backend runs exported ONNX models (``onnx``), and the PyTorch reference encoders load their
libraries on first use (see ``_torch``)."""

from .base import ImageEncoder, TextEncoder, l2_normalise
from .clip import OpenClipEncoder
from .onnx import OnnxClipEncoder, OnnxTextEncoder, RuntimeOptions
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
    "OnnxClipEncoder",
    "OnnxTextEncoder",
    "OpenClipEncoder",
    "RuntimeOptions",
    "SentenceTextEncoder",
    "TextEncoder",
    "config_from_manifest",
    "l2_normalise",
    "load_image_encoder",
    "load_text_encoder",
    "try_load_image_encoder",
]
