"""The server-side ingest pipeline, as data: derived category fields, text normalisation, timestamp.

Every product document goes through it: bulk requests name it (``?pipeline=``) and new
indices set it as ``index.default_pipeline``, so ``_reindex`` and any hand-made write use it too.
What it does, processor by processor (Elasticsearch 8.x reference pages):

- ``html_strip`` on ``description`` (catalogue descriptions often carry markup), then ``gsub``
  ``\\s+`` -> one space and ``trim`` on ``title``, ``description``, ``attributes`` and
  ``categories``: the searched text is clean whatever wrote the document. The exact record the
  client sent stays in ``record`` (not indexed), so ``get`` still returns the product verbatim.
  (reference/8.15/htmlstrip-processor.html, gsub-processor.html, trim-processor.html; the
  string processors accept arrays of strings)
- a Painless ``script`` reads ``category_path`` (levels joined by U+001F, see ``index.py``) and
  sets ``category_top`` (first level of each path), ``category_ancestors`` (every ancestor as
  "A > B", root first, deduplicated), ``category_levels.l1``, ``.l2``, ... (the distinct level
  names at each depth) and ``category_depth`` (deepest path). The delimiter is passed in
  ``params``: Painless string literals have no ``\\u`` escapes. ``splitOnToken`` is Painless'
  literal (non-regex) split. (reference/8.15/script-processor.html,
  painless/8.15/painless-api-reference-shared-java-lang.html#painless-api-reference-shared-String)
- ``set`` ``ingested_at`` to ``{{{_ingest.timestamp}}}``, the time the node ingested the
  document. (reference/8.15/set-processor.html, ingest.html#access-ingest-metadata)

There is no pipeline-level ``on_failure``: a document the pipeline cannot process is
rejected with its reason (and reported per id by the bulk writer), never indexed half-done.

``PIPELINE_ID`` carries the definition's version; a changed definition gets a new id, so indices
built for the old one keep working until they are reindexed. ``ensure_pipeline`` (in
``ctir_es.store.es.lifecycle``) compares the stored definition and only PUTs when it differs.
(reference/8.15/put-pipeline-api.html)
"""

from __future__ import annotations

from typing import Any

from .index import (
    ATTRIBUTES_FIELD,
    CATEGORIES_FIELD,
    CATEGORY_ANCESTORS_FIELD,
    CATEGORY_DEPTH_FIELD,
    CATEGORY_LEVELS_FIELD,
    CATEGORY_PATH_FIELD,
    CATEGORY_TOP_FIELD,
    DESCRIPTION_FIELD,
    INGESTED_AT_FIELD,
    PATH_DELIMITER,
    PIPELINE_ID,
    PIPELINE_VERSION,
    TITLE_FIELD,
)

__all__ = ["PIPELINE_ID", "PIPELINE_VERSION", "derive_category_fields", "pipeline_body"]
DISPLAY_SEPARATOR = " > "  # products.PATH_SEPARATOR: how ancestors read in Kibana

CATEGORY_SCRIPT = """
def paths = ctx[params.path_field];
if (paths == null) { return; }
if (!(paths instanceof List)) { paths = [paths]; }
List top = new ArrayList();
List ancestors = new ArrayList();
Map levels = new HashMap();
int depth = 0;
for (def path : paths) {
  if (path == null) { continue; }
  String[] parts = path.toString().splitOnToken(params.delimiter);
  String prefix = '';
  int level = 0;
  for (String raw : parts) {
    String name = raw.trim();
    if (name.isEmpty()) { continue; }
    level += 1;
    if (level == 1 && !top.contains(name)) { top.add(name); }
    prefix = level == 1 ? name : prefix + params.separator + name;
    if (!ancestors.contains(prefix)) { ancestors.add(prefix); }
    List names = levels.computeIfAbsent('l' + level, k -> new ArrayList());
    if (!names.contains(name)) { names.add(name); }
  }
  if (level > depth) { depth = level; }
}
ctx[params.top_field] = top;
ctx[params.ancestors_field] = ancestors;
ctx[params.levels_field] = levels;
ctx[params.depth_field] = depth;
""".strip()


def _normalise_whitespace(field: str) -> list[dict[str, Any]]:
    return [
        {
            "gsub": {
                "field": field,
                "pattern": "\\s+",
                "replacement": " ",
                "ignore_missing": True,
                "tag": f"collapse_whitespace_{field}",
            }
        },
        {"trim": {"field": field, "ignore_missing": True, "tag": f"trim_{field}"}},
    ]


def pipeline_body() -> dict[str, Any]:
    """The body of ``PUT _ingest/pipeline/{PIPELINE_ID}``."""
    processors: list[dict[str, Any]] = [
        {
            "html_strip": {
                "field": DESCRIPTION_FIELD,
                "ignore_missing": True,
                "tag": f"strip_html_{DESCRIPTION_FIELD}",
            }
        }
    ]
    for field in (TITLE_FIELD, DESCRIPTION_FIELD, ATTRIBUTES_FIELD, CATEGORIES_FIELD):
        processors += _normalise_whitespace(field)
    processors.append(
        {
            "script": {
                "lang": "painless",
                "tag": "derive_category_fields",
                "source": CATEGORY_SCRIPT,
                "params": {
                    "path_field": CATEGORY_PATH_FIELD,
                    "delimiter": PATH_DELIMITER,
                    "separator": DISPLAY_SEPARATOR,
                    "top_field": CATEGORY_TOP_FIELD,
                    "ancestors_field": CATEGORY_ANCESTORS_FIELD,
                    "levels_field": CATEGORY_LEVELS_FIELD,
                    "depth_field": CATEGORY_DEPTH_FIELD,
                },
            }
        }
    )
    processors.append(
        {
            "set": {
                "field": INGESTED_AT_FIELD,
                "value": "{{{_ingest.timestamp}}}",
                "tag": "ingest_timestamp",
            }
        }
    )
    return {
        "description": (
            "ctir-es products: normalise text, derive category levels and ancestors "
            "from category_path, set the ingest timestamp"
        ),
        "version": PIPELINE_VERSION,
        "_meta": {"managed_by": "ctir-es"},
        "processors": processors,
    }


def derive_category_fields(paths: list[str]) -> dict[str, Any]:
    """What ``CATEGORY_SCRIPT`` sets for ``category_path`` values, in Python.

    Used by tests (and the stub server) to pin the script's meaning; keep the two in step.
    """
    top: list[str] = []
    ancestors: list[str] = []
    levels: dict[str, list[str]] = {}
    depth = 0
    for path in paths:
        prefix = ""
        level = 0
        for raw in path.split(PATH_DELIMITER):
            name = raw.strip()
            if not name:
                continue
            level += 1
            if level == 1 and name not in top:
                top.append(name)
            prefix = name if level == 1 else prefix + DISPLAY_SEPARATOR + name
            if prefix not in ancestors:
                ancestors.append(prefix)
            names = levels.setdefault(f"l{level}", [])
            if name not in names:
                names.append(name)
        depth = max(depth, level)
    return {
        CATEGORY_TOP_FIELD: top,
        CATEGORY_ANCESTORS_FIELD: ancestors,
        CATEGORY_LEVELS_FIELD: levels,
        CATEGORY_DEPTH_FIELD: depth,
    }
