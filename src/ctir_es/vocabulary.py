"""The words ctir-es shares across its layers: source, vector-field, mode and fusion names and
the default depths. The CLI's choices, the HTTP ``Literal``s, the validators and the stores all
read them from here, so a new source or fusion method is added in one place.

Imports nothing of the package: every module can depend on it without cycles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, get_args

# -- vector fields (the stored dense_vector fields) ------------------------------------------
TITLE_VECTOR: Final = "title_vector"  # the text encoder's vector of the product text
IMAGE_VECTOR: Final = "image_vector"  # CLIP's image tower on the product image
CLIP_ITA_VECTOR: Final = "clip_ita"  # the product head of a trained CLIP-ITA model
CLIP_TITLE_VECTOR: Final = "clip_title_vector"  # CLIP's text tower on the title (image-to-text)

# -- result sources (the names of ranked lists, as users see them in score breakdowns) -------
LEXICAL_SOURCE: Final = "bm25"
TEXT_SOURCE: Final = "text"
IMAGE_SOURCE: Final = "image"
CLIP_ITA_SOURCE: Final = "clip_ita"
CLIP_TITLE_SOURCE: Final = "clip_title"  # an image query against the CLIP title vectors
SourceName = Literal["bm25", "text", "image", "clip_ita", "clip_title"]
SOURCE_NAMES: tuple[str, ...] = get_args(SourceName)

# Which source a vector field answers as, when it is queried with the query's own encoding.
FIELD_SOURCES: Mapping[str, str] = {
    TITLE_VECTOR: TEXT_SOURCE,
    IMAGE_VECTOR: IMAGE_SOURCE,
    CLIP_ITA_VECTOR: CLIP_ITA_SOURCE,
    CLIP_TITLE_VECTOR: CLIP_TITLE_SOURCE,
}

# -- query modes -----------------------------------------------------------------------------
Mode = Literal["category", "text", "image"]
MODES: tuple[str, ...] = get_args(Mode)
TextMode = Literal["category", "text"]  # the modes a text query can force

# -- fusion ----------------------------------------------------------------------------------
FusionMethod = Literal["rrf", "linear"]
FUSION_METHODS: tuple[str, ...] = get_args(FusionMethod)
DEFAULT_FUSION: Final = "rrf"
RRF_K: Final = 60  # Cormack et al. 2009; also Elasticsearch's rank_constant default
# Each source returns at least this many candidates before fusion (fusion needs depth), and the
# evaluation ranks this deep (recall@100 needs 100).
CANDIDATE_DEPTH: Final = 100

# -- settings --------------------------------------------------------------------------------
# Spellings of an on/off setting, and those that switch an optional component (a model, weights,
# a URL) off; an env var or config value, compared lower-cased.
ON: frozenset[str] = frozenset({"1", "true", "yes", "on"})
OFF: frozenset[str] = frozenset({"0", "false", "no", "off"})
DISABLED: frozenset[str] = frozenset({"", "none", "off", "false", "no"})
MAX_K: Final = 1_000  # results one query may ask for
