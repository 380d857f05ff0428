"""Memory and size helpers: resident memory, store file size, the machine description."""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path
from typing import Any


def rss_bytes() -> int:
    """Current resident set size of this process (from /proc, no dependency)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def file_bytes(path: Path) -> int:
    """The store on disk: the SQLite file plus its WAL (checkpointed stores have none) and the
    vector files beside it (``<store>.vectors/``, store format 4)."""
    own = sum(Path(str(path) + s).stat().st_size for s in ("", "-wal") if Path(str(path) + s).exists())
    return own + sum(f.stat().st_size for f in Path(str(path) + ".vectors").glob("*") if f.is_file())


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import numpy as np

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem, "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform(), "load_avg": [round(x, 2) for x in os.getloadavg()]}


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def machine_line(m: dict[str, Any], load_end: Any) -> str:
    """The first line of every benchmark table: the machine and the load at start and end."""
    return (f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_bytes'] / 2**30:.0f} GiB RAM; "
            f"load average at start {m['load_avg']}, at end {load_end}")
