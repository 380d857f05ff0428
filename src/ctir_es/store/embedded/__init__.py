"""The embedded backend: one SQLite file, in one package shaped like ``store.elasticsearch``.

- ``store``           ``EmbeddedStore``: the ``Store`` protocol (and its optional capabilities)
- ``failures``        SQLite / OS errors as ``StoreError``s that name the cause and the fix
- ``files``           the file itself: regular files only, the header check, read-only opening
- ``file_format``     the tables, the format record and the upgrade of older formats
- ``locking``         one writer per file: a ``flock`` on its inode, the holder's pid beside it
- ``sql_filters``     the filter grammar as SQL over ``products``
- ``lexical``         the ``LexicalEngine`` interface and the engine a store records, with
  ``lexical_tantivy`` (beside the file, ranked by the native scorer: the default) and
  ``lexical_fts5`` (SQLite FTS5 in the file)
- ``knn``             exact kNN over the float32 matrix of a field
- ``approximate``     the approximate indexes' lifecycle (their files: ``store/ann.py``)
- ``reads``           products, vectors and category counts read back
- ``stats``           ``stats`` and ``stats --check``

Shared with the other store code one level up: ``batch_write`` (the SQL of a batch), ``scan``
(an exact scan shared by two threads), ``wal_checkpoint`` (the WAL folded in beside the writer)
and ``ann`` (the approximate index files).
"""

from ..batch_write import NODE_SEP
from .failures import REBUILD_HINT, NoStore
from .file_format import SCHEMA_VERSION
from .lexical import DEFAULT_LEXICAL_ENGINE, LEXICAL_ENV
from .lexical_fts5 import FTS_DDL as _FTS_DDL
from .lexical_fts5 import fts_query
from .sql_filters import filter_sql, value_filter_sql
from .store import ID_MAP_AFTER, VECTOR_INDEXES, EmbeddedStore

__all__ = [
    "DEFAULT_LEXICAL_ENGINE",
    "ID_MAP_AFTER",
    "LEXICAL_ENV",
    "NODE_SEP",
    "REBUILD_HINT",
    "SCHEMA_VERSION",
    "VECTOR_INDEXES",
    "_FTS_DDL",
    "EmbeddedStore",
    "NoStore",
    "filter_sql",
    "fts_query",
    "value_filter_sql",
]
