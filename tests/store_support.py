"""Test helpers for embedded store files: copying one, reading one another process writes, and
killing that process at random moments."""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
import subprocess
import time
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


def kill_at_checkpoints(cmd: list[str], db: Path, targets: list[int], rng: random.Random, pause: float) -> int:
    """Run ``cmd`` (a writer that prints ``ready``, records ``checkpoint:kill`` in ``db`` and
    prints ``done`` at its end) once per target, SIGKILLed a random moment (up to ``pause`` s)
    after the checkpoint reaches the target; then once more to the end if no run finished.
    Returns how many runs were killed."""
    kills, finished = 0, False
    for target in targets:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready"), proc.stderr.read() if proc.stderr else line
        while proc.poll() is None and checkpoint_of(db, "checkpoint:kill") < target:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, pause))  # somewhere in the next batch
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        out, err = proc.communicate()
        if "done" in out:
            finished = True
            break
        assert proc.returncode == -signal.SIGKILL, err
    if not finished:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert "done" in done.stdout, done.stderr
    return kills
