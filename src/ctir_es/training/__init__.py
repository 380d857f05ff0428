"""CLIP-ITA training (Hendriksen et al., ECIR 2022) on any catalogue.

- ``data``: category-product pairs per setting, the split by product, held-out categories;
- ``features``: frozen-encoder features, computed once and cached per model and product;
- ``model`` / ``loss`` / ``train``: the projection heads, bidirectional InfoNCE, the loop
  with early stopping (these import PyTorch);
- ``evaluate``: P@k and friends for CLIP-ITA against the zero-shot text baseline;
- ``export``: the heads to ONNX, so ingest and query run them without PyTorch.

Importing this package does not import PyTorch.
"""
