"""Bounded load test of ``ctir-es serve`` against idle and slow clients (issue 12).

    python scripts/idle_load.py                        # sample store, 1,000 idle sockets, 200 + 200 searches
    python scripts/idle_load.py --store shop.db --idle 1000 --sequential 200 --concurrent 200

What it does, all on 127.0.0.1, every loop bounded in count and time:

1. starts ``ctir-es serve`` on a free port (on ``--store``, or on the bundled sample ingested
   BM25-only into a temporary store);
2. starts a second process (this script with ``--hold``) that opens ``--idle`` sockets and
   keeps them held: half send nothing, half send half a request head (slowloris). When the
   server cuts one (its header timeout), the holder opens another, so the count stays up;
3. once they are all open, this process runs ``--sequential`` searches one after another
   (each must be a 200), then ``--concurrent`` searches at once from as many threads (each
   must be a 200, or a 503 in the JSON error shape with ``Retry-After``);
4. prints the figures (and ``--json``) and exits 0 when both conditions hold, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

QUERY = "Kitchen & Dining > Cookware"
HALF_HEAD = b"GET /search?q=blender HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"


# -- the second process: hold idle sockets ----------------------------------------------------

def hold(port: int, count: int, seconds: float, max_reconnects: int) -> None:
    """Keep ``count`` idle / half-head sockets open for ``seconds``; report on stdout."""
    sel = selectors.DefaultSelector()
    opened = cut = failed = 0
    peak = 0

    def open_one(i: int) -> None:
        nonlocal opened, failed
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            failed += 1
            return
        s.setblocking(False)
        if i % 2:
            try:
                s.send(HALF_HEAD)
            except OSError:
                pass
        sel.register(s, selectors.EVENT_READ, i)
        opened += 1

    for i in range(count):
        open_one(i)
    peak = len(sel.get_map())
    print(json.dumps({"held": peak}), flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end and opened < count + max_reconnects:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(4096)  # type: ignore[union-attr]
            except OSError:
                data = b""
            if not data or b"HTTP/1.1" in data:  # the server closed it (or answered 408 and closed)
                sel.unregister(s)
                s.close()  # type: ignore[union-attr]
                cut += 1
                open_one(key.data)
        peak = max(peak, len(sel.get_map()))
    held_at_end = len(sel.get_map())
    for key in list(sel.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    print(json.dumps({"done": True, "opened": opened, "cut_by_server": cut, "connect_failures": failed,
                      "peak_held": peak, "held_at_end": held_at_end}), flush=True)


# -- this process: searches -------------------------------------------------------------------

def search_once(port: int, conn: HTTPConnection | None = None, timeout: float = 30) -> dict[str, Any]:
    own = conn is None
    conn = conn or HTTPConnection("127.0.0.1", port, timeout=timeout)
    start = time.monotonic()
    try:
        conn.request("GET", "/search?" + urllib.parse.urlencode({"q": QUERY, "k": 10}))
        resp = conn.getresponse()
        body = resp.read()
        out = {"status": resp.status, "ms": (time.monotonic() - start) * 1000,
               "json": resp.getheader("content-type", "").startswith("application/json"),
               "retry_after": resp.getheader("retry-after")}
        if resp.status != 200:
            try:
                out["shape_ok"] = set(json.loads(body)["error"]) == {"code", "message"}
            except (ValueError, KeyError, TypeError):
                out["shape_ok"] = False
        return out
    except OSError as exc:
        return {"status": f"error: {type(exc).__name__}", "ms": (time.monotonic() - start) * 1000}
    finally:
        if own:
            conn.close()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli() -> list[str]:
    exe = Path(sys.executable).parent / "ctir-es"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ctir_es.cli"]


def wait_healthy(port: int, proc: subprocess.Popen[bytes], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"ctir-es serve exited with {proc.returncode}")
        try:
            c = HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"ctir-es serve did not answer within {seconds} s")


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="ctir-idle-load-"))
    env = {**os.environ, "CTIR_ES_CONFIG": str(work / "absent.toml"), "CTIR_ES_CACHE_DIR": str(work / "cache")}
    for var in ("CTIR_ES_URL", "CTIR_ES_STORE"):
        env.pop(var, None)
    store = args.store
    if store is None:
        store = work / "sample.db"
        subprocess.run([*cli(), "ingest", "sample", "--store", str(store), "--text-model", "none", "--no-images",
                        "--json"], env=env, check=True, stdout=subprocess.DEVNULL, timeout=300)
    port = free_port()
    log = open(work / "serve.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen([*cli(), "serve", "--store", str(store), "--port", str(port),
                               "--header-timeout", str(args.header_timeout)], env=env, stdout=log, stderr=log)
    holder = None
    try:
        wait_healthy(port, server, 120)
        holder = subprocess.Popen([sys.executable, __file__, "--hold", "--port", str(port), "--idle", str(args.idle),
                                   "--seconds", str(args.hold_seconds)], stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None
        first = json.loads(holder.stdout.readline() or "{}")
        held = first.get("held", 0)

        t0 = time.monotonic()
        conn = HTTPConnection("127.0.0.1", port, timeout=30)
        sequential = []
        for _ in range(args.sequential):
            r = search_once(port, conn)
            if r["status"] != 200:  # a fresh connection for the next one
                conn.close()
                conn = HTTPConnection("127.0.0.1", port, timeout=30)
            sequential.append(r)
        conn.close()
        seq_seconds = time.monotonic() - t0

        barrier = threading.Barrier(args.concurrent, timeout=60)
        concurrent: list[dict[str, Any]] = []
        lock = threading.Lock()

        def one() -> None:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass
            r = search_once(port)
            with lock:
                concurrent.append(r)

        threads = [threading.Thread(target=one, daemon=True) for _ in range(args.concurrent)]
        t1 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        conc_seconds = time.monotonic() - t1

        holder_report: dict[str, Any] = {}
        try:
            out, _ = holder.communicate(timeout=args.hold_seconds + 60)
            lines = [json.loads(line) for line in out.splitlines() if line.strip()]
            holder_report = lines[-1] if lines else {}
        except subprocess.TimeoutExpired:
            holder.kill()
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
            holder.wait()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()

    seq_status = Counter(str(r["status"]) for r in sequential)
    conc_status = Counter(str(r["status"]) for r in concurrent)
    bad_503 = [r for r in concurrent if r["status"] == 503 and not (r.get("json") and r.get("shape_ok")
                                                                     and r.get("retry_after"))]
    other = [r for r in concurrent if r["status"] not in (200, 503)]
    seq_ms = [r["ms"] for r in sequential if r["status"] == 200]
    conc_ms = [r["ms"] for r in concurrent if r["status"] == 200]
    traceback_in_log = "Traceback" in (work / "serve.log").read_text(errors="replace")
    summary = {
        "idle_sockets_held_before_searches": held,
        "holder": holder_report,
        "sequential": {"n": len(sequential), "status": dict(seq_status), "seconds": round(seq_seconds, 2),
                       "p50_ms": round(pct(seq_ms, 0.5), 1), "p95_ms": round(pct(seq_ms, 0.95), 1),
                       "max_ms": round(max(seq_ms, default=float("nan")), 1)},
        "concurrent": {"n": len(concurrent), "status": dict(conc_status), "seconds": round(conc_seconds, 2),
                       "p50_ms": round(pct(conc_ms, 0.5), 1), "max_ms": round(max(conc_ms, default=float("nan")), 1),
                       "503_without_json_or_retry_after": len(bad_503), "other_statuses": len(other)},
        "traceback_in_server_log": traceback_in_log,
    }
    ok = (held >= args.idle and seq_status == Counter({"200": args.sequential}) and not bad_503 and not other
          and len(concurrent) == args.concurrent and not traceback_in_log)
    summary["ok"] = ok
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"idle sockets held by a second process: {held} (holder: {holder_report})")
        s, c = summary["sequential"], summary["concurrent"]
        print(f"{s['n']} sequential searches: {s['status']} in {s['seconds']} s "
              f"(p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms, max {s['max_ms']} ms)")
        print(f"{c['n']} concurrent searches: {c['status']} in {c['seconds']} s (p50 {c['p50_ms']} ms, "
              f"max {c['max_ms']} ms); 503s without JSON + Retry-After: {c['503_without_json_or_retry_after']}; "
              f"other statuses: {c['other_statuses']}")
        print(f"traceback in the server log: {traceback_in_log}")
        print("OK" if ok else "FAILED")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path, default=None, help="A store to serve (default: the sample, BM25 only).")
    p.add_argument("--idle", type=int, default=1000, help="Idle / half-head sockets held by the second process.")
    p.add_argument("--sequential", type=int, default=200)
    p.add_argument("--concurrent", type=int, default=200)
    p.add_argument("--header-timeout", type=float, default=10.0, help="The server's --header-timeout.")
    p.add_argument("--hold-seconds", type=float, default=60.0, help="How long the holder keeps its sockets.")
    p.add_argument("--json", action="store_true")
    p.add_argument("--hold", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.hold:
        hold(args.port, args.idle, args.seconds, max_reconnects=args.idle * 20)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
