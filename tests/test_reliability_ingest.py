"""Issue 12, ingest side: each case runs the real ``ctir-es`` command (in a subprocess where a
traceback could show) and checks the named outcome, that good records around the bad one are
indexed, and that no Python traceback reaches the user. Outcomes: docs/reliability.md."""

from __future__ import annotations

import csv
import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from raw_server import raw_server

from ctir_es.ingest.readers._lines import iter_lines
from ctir_es.ingest.report import IngestReport
from ctir_es.products import Product
from ctir_es.search import Search
from ctir_es.store.embedded import EmbeddedStore

GOOD = [{"id": f"good-{i}", "title": f"good steel product {i}", "categories": [["Home", "Kitchen"]]}
        for i in range(3)]
CLI = [str(Path(sys.executable).parent / "ctir-es")]


def run_cli(tmp_path: Path, *args: str | bytes, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "CTIR_ES_CONFIG": str(tmp_path / "absent.toml"), "CTIR_ES_CACHE_DIR": str(tmp_path / "cache")}
    for var in ("CTIR_ES_URL", "CTIR_ES_STORE", "CTIR_ES_TEXT_MODEL", "CTIR_ES_CLIP_WEIGHTS"):
        base.pop(var, None)
    out = subprocess.run([*CLI, *args], env={**base, **(env or {})}, capture_output=True, text=True, check=False,
                         errors="replace", timeout=timeout)
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    return out


def last_line(out: subprocess.CompletedProcess[str]) -> str:
    return out.stderr.strip().splitlines()[-1]


def ingest_json(tmp_path: Path, kind: str, source: Path, store: Path, *extra: str,
                env: dict[str, str] | None = None) -> dict:
    out = run_cli(tmp_path, "ingest", kind, *([str(source)] if kind != "xmarket" else ["--source", str(source)]),
                  "--store", str(store), "--no-images", "--json", *extra, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def write_jsonl(path: Path, raw_lines: list[str]) -> Path:
    path.write_text("\n".join([*raw_lines, *(json.dumps(g) for g in GOOD)]) + "\n", encoding="utf-8")
    return path


# -- 1. lone surrogates -----------------------------------------------------------------------

SURROGATE_RECORDS = [  # JSON text: the escape stays an escape until json.loads
    '{"id": "s-title", "title": "blender \\ud800 500 W"}',
    '{"id": "s-id-\\udfff", "title": "an id with a lone low surrogate"}',
    '{"id": "s-cat", "title": "pan", "categories": [["Home", "Pans \\ud83d"]]}',
    '{"id": "s-attr", "title": "pan", "attributes": {"Brand": "X\\ud800"}}',
    '{"id": "s-attr-key", "title": "pan", "attributes": {"Br\\ud800and": "X"}}',
    '{"id": "s-desc", "title": "pan", "description": "text \\udc80 more"}',
    '{"id": "s-image", "title": "pan", "images": ["img\\ud800.jpg"]}',
    '{"id": "s-market", "title": "pan", "market": "u\\ud800s"}',
]


def test_lone_surrogates_are_rejected_by_name_and_never_poison_the_ingest(
        tmp_path: Path, tiny_text_model_dir: Path) -> None:
    """With a real text encoder: every field, JSONL / XMarket / Flipkart, twice (a re-run must
    not abort at the same place), then through ``Search.index``."""
    store = tmp_path / "s.db"
    jsonl = write_jsonl(tmp_path / "c.jsonl", SURROGATE_RECORDS)
    for _ in range(2):
        report = ingest_json(tmp_path, "jsonl", jsonl, store, "--text-model", str(tiny_text_model_dir), "--no-resume")
        assert report["rejected"] == {"invalid_unicode": len(SURROGATE_RECORDS)}
        assert report["indexed"] == len(GOOD) and report["store_count"] == len(GOOD)
    assert {r["location"] for r in report["rejections"]} == {f"c.jsonl:{i}" for i in range(1, 9)}

    xm = tmp_path / "metadata_us_Home.json"
    xm.write_text("\n".join([
        '{"asin": "x1", "title": "kettle \\ud800"}',
        "{'asin': 'x2', 'title': 'kettle', 'categories': [['Home', 'Ket\\udfffles']]}",  # a Python literal
        *(json.dumps({"asin": g["id"], "title": g["title"]}) for g in GOOD)]) + "\n", encoding="utf-8")
    report = ingest_json(tmp_path, "xmarket", xm, store, "--text-model", str(tiny_text_model_dir))
    assert report["rejected"] == {"invalid_unicode": 2} and report["indexed"] == len(GOOD)

    fk = tmp_path / "fk"
    fk.mkdir()
    with (fk / "products.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["uniq_id", "product_name", "product_category_tree", "product_specifications"])
        w.writerow(["f1", "mug", '["Home >> Mugs \\ud800"]', ""])
        w.writerow(["f2", "mug", '["Home >> Mugs"]', '{"product_specification"=>[{"key"=>"Brand", "value"=>"A\\ud800"}]}'])
        w.writerow(["f3", "good mug", '["Home >> Mugs"]', ""])
    report = ingest_json(tmp_path, "flipkart", fk, store, "--text-model", str(tiny_text_model_dir))
    assert report["rejected"] == {"invalid_unicode": 2} and report["indexed"] == 1

    with Search(EmbeddedStore(tmp_path / "api.db")) as search:
        report_api = search.index([Product(id="p1", title="bad \ud800"), {"id": "p2", "title": "bad \udfff"},
                                   {"id": "p3", "title": "fine"}])
    assert dict(report_api.rejected) == {"invalid_unicode": 2} and report_api.indexed == 1


# -- 3. the writer lock -----------------------------------------------------------------------

def test_lock_file_symlink_or_hard_link_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "c.jsonl", [])
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data\n")
    store = tmp_path / "s.db"
    Path(f"{store}.lock").symlink_to(victim)
    out = run_cli(tmp_path, "ingest", "jsonl", str(jsonl), "--store", str(store), "--text-model", "none", "--no-images")
    assert out.returncode == 1 and "is a symlink" in last_line(out)
    assert victim.read_text() == "precious data\n"
    Path(f"{store}.lock").unlink()
    os.link(victim, f"{store}.lock")
    out = run_cli(tmp_path, "ingest", "jsonl", str(jsonl), "--store", str(store), "--text-model", "none", "--no-images")
    assert out.returncode == 1 and "not a plain file of its own" in last_line(out)
    assert victim.read_text() == "precious data\n"


def test_two_paths_to_one_store_share_one_lock(tmp_path: Path) -> None:
    real = tmp_path / "real" / "s.db"
    real.parent.mkdir()
    (tmp_path / "alias").symlink_to(real.parent, target_is_directory=True)
    code = ("import sys, time; from ctir_es.store.embedded import EmbeddedStore\n"
            "with EmbeddedStore(sys.argv[1]).exclusive_writer():\n    print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(real)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        jsonl = write_jsonl(tmp_path / "c.jsonl", [])
        out = run_cli(tmp_path, "ingest", "jsonl", str(jsonl), "--store", str(tmp_path / "alias" / "s.db"),
                      "--text-model", "none", "--no-images")
        assert out.returncode == 1 and "another ingest" in last_line(out)
    finally:
        holder.kill()
        holder.wait()


# -- 5. image download deadline ---------------------------------------------------------------

@pytest.fixture
def drip_server() -> Iterator[str]:
    """Answers 200 with Content-Length 100,000, then one byte every 0.5 s."""
    def handle(conn: socket.socket, stop: threading.Event) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(200):  # bounded: 100 s at most
            if stop.wait(0.5):
                return
            conn.sendall(b"\xff")

    with raw_server(handle) as url:
        yield url


def test_dripping_image_server_costs_a_bounded_time(tmp_path: Path, drip_server: str) -> None:
    """image_timeout 1 s: each image gets 3 s in all; after 8 failed downloads the host is not
    asked again. 12 products: all indexed, their images counted missing by reason."""
    records = [json.dumps({"id": f"d{i}", "title": f"dripping {i}", "images": [f"{drip_server}/{i}.jpg"]})
               for i in range(12)]
    config = tmp_path / "config.toml"
    config.write_text("image_timeout = 1.0\nallow_private_images = true\n", encoding="utf-8")  # 127.0.0.1
    start = time.monotonic()
    out = run_cli(tmp_path, "ingest", "jsonl", str(write_jsonl(tmp_path / "c.jsonl", records)), "--store",
                  str(tmp_path / "s.db"), "--text-model", "none", "--clip-weights", "none", "--json",
                  env={"CTIR_ES_CONFIG": str(config)})
    elapsed = time.monotonic() - start
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["indexed"] == 12 + len(GOOD)
    missing = report["images_missing"]
    assert missing.get("too_slow", 0) >= 8 and missing.get("too_slow", 0) + missing.get("host_failing", 0) == 12
    assert missing.get("host_failing", 0) >= 1
    assert elapsed < 60  # without the deadline: 100,000 bytes at 2 B/s = 14 h per image


# -- weak spots: gzip bombs and blank runs ----------------------------------------------------------

def test_gzip_of_blank_lines_stops_fast_and_is_reported(tmp_path: Path) -> None:
    bomb = tmp_path / "metadata_us_Home.json.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        fh.write(b'{"asin": "b1", "title": "before the blanks"}\n')
        for _ in range(100):
            fh.write(b"\n" * 1_000_000)  # 100 million blank lines, ~100 KB compressed
        fh.write(b'{"asin": "b2", "title": "after the blanks"}\n')
    start = time.monotonic()
    report = ingest_json(tmp_path, "xmarket", bomb, tmp_path / "s.db", "--text-model", "none")
    assert time.monotonic() - start < 60
    assert report["rejected"] == {"blank_run": 1} and report["indexed"] == 1
    assert any("stopped reading at line 10,001" in m for m in report["messages"])


def test_gzip_expansion_over_the_ratio_is_a_bomb(tmp_path: Path) -> None:
    bomb = tmp_path / "metadata_us_Home.json.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        fh.write(b'{"asin": "b1", "title": "first"}\n')
        for _ in range(400):
            fh.write(b'{"asin": "x", "title": "' + b" " * 50_000 + b'"}\n')  # compresses ~1000x
    report = IngestReport()
    lines = list(iter_lines(bomb, report, ratio_grace=1_000_000))
    assert [n for n, _ in lines][:1] == [1] and dict(report.rejected) == {"gzip_bomb": 1}
    assert len(lines) < 400


# -- weak spots: a category level holding ' > ' ---------------------------------------------------

def test_category_level_holding_separator_is_reachable_by_within(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "c.jsonl", [
        json.dumps({"id": "adapter", "title": "usb adapter", "categories": [["Tools", "Cables > Adapters", "USB"]]}),
        json.dumps({"id": "cable", "title": "usb cable", "categories": [["Tools", "Cables", "Adapters"]]}),
        json.dumps({"id": "escaped", "title": "usb hub", "categories": "Tools > Cables \\> Adapters > Hubs"}),
    ])
    store = tmp_path / "s.db"
    ingest_json(tmp_path, "jsonl", jsonl, store, "--text-model", "none")

    def within(path: str) -> set[str]:
        out = run_cli(tmp_path, "query", "usb", "--within", path, "--store", str(store), "--json")
        assert out.returncode == 0, out.stderr
        return {r["id"] for r in json.loads(out.stdout)["results"]}

    assert within("Tools > Cables \\> Adapters") == {"adapter", "escaped"}
    assert within("Tools > Cables > Adapters") == {"cable"}
    tree = EmbeddedStore(store).category_counts()
    assert ("Tools", "Cables > Adapters", "Hubs") in tree and ("Tools", "Cables > Adapters", "USB") in tree
