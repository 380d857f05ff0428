"""Test helpers for embedded store files: copying one, and reading one another process writes."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path


def checkpoint_of(db: Path, pattern: str = "checkpoint:%") -> int:
    """The first checkpoint whose meta key matches ``pattern`` (SQL LIKE), read-only: 0 while the
    store does not exist yet, is locked or holds none."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key LIKE ?", (pattern,)).fetchone()
            return int(row[0]) if row else 0
    except sqlite3.Error:
        return 0


def copy_vectors(src: Path, dst: Path) -> None:
    """Copy the vector files beside store ``src`` (``<src>.vectors/``, store format 4) to
    ``dst``'s, as a copy of the store file needs them; a store without them has nothing to copy."""
    folder = Path(str(src) + ".vectors")
    if folder.is_dir():
        shutil.copytree(folder, Path(str(dst) + ".vectors"))
