"""The torch-free runtime: onnxruntime sessions, HF ``tokenizers`` and Pillow/NumPy image
preprocessing behind the same ``TextEncoder`` / ``ImageEncoder`` protocols."""

from .clip import OnnxClipEncoder
from .preprocess import ImagePreprocess
from .session import RuntimeOptions
from .text import OnnxTextEncoder

__all__ = ["ImagePreprocess", "OnnxClipEncoder", "OnnxTextEncoder", "RuntimeOptions"]
