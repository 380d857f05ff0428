"""Issue 12, command line and store: weights, bad argv / config, stores that are missing,
read-only, corrupted or on a full disk. Each runs the real ``ctir-es`` in a subprocess and
checks one clear line, the exit code, no traceback, and that nothing committed is lost.
The read-only and disk-full cases mount a small tmpfs in a private mount namespace
(``unshare -m``, as root); they skip, saying why, where that is impossible."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from store_support import copy_vectors
from test_reliability_ingest import CLI, GOOD, ingest_json, last_line, run_cli, write_jsonl

from ctir_es.config import Settings

CATEGORY = "Kitchen & Dining > Cookware"


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path) -> Path:
    """The bundled sample, ingested by the CLI with the tiny text model (bm25 + text sources)."""
    tmp = tmp_path_factory.mktemp("sample")
    out = run_cli(tmp, "ingest", "sample", "--store", str(tmp / "sample.db"), "--text-model",
                  str(tiny_text_model_dir), "--no-images")
    assert out.returncode == 0, out.stderr
    return tmp / "sample.db"


def engine_env(engine: str) -> dict[str, str]:
    """The environment of a command that makes a new store use lexical engine ``engine``
    (whatever the caller's CTIR_ES_LEXICAL_ENGINE; an existing store keeps its own)."""
    return {"CTIR_ES_LEXICAL_ENGINE": engine}


def sample_with_engine(tmp: Path, model_dir: Path, engine: str) -> Path:
    """The sample as ``sample_store`` builds it, in a new store of lexical engine ``engine``."""
    out = run_cli(tmp, "ingest", "sample", "--store", str(tmp / f"{engine}.db"), "--text-model", str(model_dir),
                  "--no-images", env=engine_env(engine))
    assert out.returncode == 0, out.stderr
    return tmp / f"{engine}.db"


# -- 6. fusion weights ------------------------------------------------------------------------

@pytest.mark.parametrize(("weight", "says", "code"), [
    ("bm25=nan", "between 0 and 1000", 2), ("bm25=inf", "between 0 and 1000", 2), ("text=-1", "between 0 and 1000", 2),
    ("bm25=abc", "not a number", 2), ("nosuch=1", "unknown fusion source 'nosuch'", 2), ("bm25", "SOURCE=NUMBER", 2),
    ("image=0.5", "this query uses only bm25, text", 1),  # known source, but not in this index
])
def test_bad_cli_weight_is_refused_like_the_http_api(tmp_path: Path, sample_store: Path, weight: str,
                                                     says: str, code: int) -> None:
    from fastapi.testclient import TestClient

    from ctir_es.search import Search
    from ctir_es.service import create_app

    out = run_cli(tmp_path, "query", CATEGORY, "--weight", weight, "--store", str(sample_store), "--json")
    assert out.returncode == code and says in out.stderr and out.stdout == ""
    with Search.open(Settings(store=sample_store)) as search:
        r = TestClient(create_app(search)).get("/search", params={"q": CATEGORY, "weights": weight})
    assert r.status_code == 400 and says in r.json()["error"]["message"]


def test_naming_one_weight_keeps_the_other_defaults_and_reports_them(tmp_path: Path, sample_store: Path) -> None:
    out = run_cli(tmp_path, "query", CATEGORY, "--weight", "text=0.5", "--store", str(sample_store), "--json")
    assert out.returncode == 0, out.stderr
    response = json.loads(out.stdout)
    assert response["weights"] == {"bm25": 1.0, "text": 0.5}  # bm25 keeps its category default
    assert all(isinstance(r["score"], float) and r["score"] == r["score"] for r in response["results"])
    out = run_cli(tmp_path, "query", CATEGORY, "--store", str(sample_store))
    assert "bm25 1, text 0.3" in out.stdout  # the header states the weights in force


# -- weak spots: argv, config, mistyped stores, credentials --------------------------------------

def test_non_utf8_query_and_filter_bytes_are_one_line_errors(tmp_path: Path, sample_store: Path) -> None:
    for args in ([b"caf\xe9 > pans"], [b"pans", b"--within", b"Kitchen \xff"], [b"pans", b"--market", b"\xfe"]):
        out = subprocess.run([*CLI, "query", *args, "--store", str(sample_store)], capture_output=True,
                             env={**os.environ, "CTIR_ES_CONFIG": str(tmp_path / "none.toml")}, check=False)
        err = out.stderr.decode(errors="replace")
        assert out.returncode == 1 and "not valid UTF-8" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("content", "says"), [
    (b'store = "caf\xe9.db"\n', "not valid UTF-8"),
    (b"batch_size = 0\n", "'batch_size' must be between 1 and 4096"),
    (b"batch_size = -1\n", "'batch_size' must be between 1 and 4096"),
    (b"image_timeout = nan\n", "'image_timeout' must be between"),
    (b'text_model = 5\n', "'text_model' has a bad value"),
])
def test_bad_config_file_is_a_one_line_error(tmp_path: Path, content: bytes, says: str) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(content)
    out = run_cli(tmp_path, "ingest", "sample", "--store", str(tmp_path / "s.db"), "--no-images",
                  env={"CTIR_ES_CONFIG": str(config)})
    assert out.returncode == 1 and says in last_line(out) and not (tmp_path / "s.db").exists()


def test_read_commands_never_create_a_store(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "dir" / "store.db"
    for args in (["query", "pans"], ["stats"], ["serve", "--port", "0"]):
        out = run_cli(tmp_path, *args, "--store", str(missing))
        assert out.returncode == 1 and "ctir-es ingest" in last_line(out), out.stderr
    assert not (tmp_path / "typo").exists()


def test_credentials_in_es_url_are_refused_without_echoing_them(tmp_path: Path) -> None:
    for args in (["query", "pans"], ["stats"], ["es", "status"]):
        out = run_cli(tmp_path, *args, "--es-url", "https://elastic:hunter2@127.0.0.1:9")
        assert out.returncode == 2, out.stderr
        assert "CTIR_ES_PASSWORD" in out.stderr and "hunter2" not in out.stderr + out.stdout


# -- weak spots: corrupted store -----------------------------------------------------------------

def test_truncated_store_is_detected_on_open(tmp_path: Path, sample_store: Path) -> None:
    broken = tmp_path / "broken.db"
    data = sample_store.read_bytes()
    broken.write_bytes(data[: len(data) // 2 + 100])
    for args in (["query", "pans"], ["stats"], ["serve", "--port", "0"]):
        out = run_cli(tmp_path, *args, "--store", str(broken))
        assert out.returncode == 1 and "is corrupted" in last_line(out) and "to rebuild it" in last_line(out)


def corrupt_fts(src: Path, dst: Path) -> None:
    """Overwrite the FTS index's root page: the file opens, text search breaks (``src`` must be a
    store of the FTS5 lexical engine, whose BM25 index is a table of the SQLite file)."""
    shutil.copyfile(src, dst)
    copy_vectors(src, dst)
    with sqlite3.connect(dst) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert conn.execute("SELECT value FROM meta WHERE key = 'lexical_engine'").fetchone() == ("fts5",)
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'products_fts_data'").fetchone()[0]
    conn.close()
    with open(dst, "r+b") as fh:
        fh.seek((root - 1) * page)
        fh.write(b"\xa5" * page)


def test_corruption_found_by_a_query_is_one_line_and_stats_check_finds_it(tmp_path: Path,
                                                                          tiny_text_model_dir: Path) -> None:
    fts5_store = sample_with_engine(tmp_path, tiny_text_model_dir, "fts5")  # the damage is inside the file
    broken = tmp_path / "broken.db"
    corrupt_fts(fts5_store, broken)
    out = run_cli(tmp_path, "query", "pans", "--store", str(broken), env=engine_env("fts5"))
    assert out.returncode == 1 and "is corrupted" in last_line(out)
    out = run_cli(tmp_path, "stats", "--check", "--store", str(broken), env=engine_env("fts5"))
    assert out.returncode == 1 and ("damaged" in last_line(out) or "corrupted" in last_line(out))
    out = run_cli(tmp_path, "stats", "--check", "--store", str(fts5_store), "--json", env=engine_env("fts5"))
    assert out.returncode == 0 and json.loads(out.stdout)["integrity"] == "ok"


@pytest.fixture(scope="module")
def tantivy_store(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path) -> Path:
    return sample_with_engine(tmp_path_factory.mktemp("tantivy"), tiny_text_model_dir, "tantivy")


def copy_store(store: Path, dst: Path, *, with_index: bool) -> Path:
    """A copy of ``store`` (checkpointed: one file), with or without the tantivy index beside it."""
    with sqlite3.connect(store) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    shutil.copyfile(store, dst)
    copy_vectors(store, dst)
    if with_index:
        shutil.copytree(lexical_index(store), lexical_index(dst))
    return dst


def lexical_index(store: Path) -> Path:
    return store.with_name(store.name + ".lexical")


def bm25_results(tmp_path: Path, store: Path, text: str) -> list[tuple[str, float]]:
    out = run_cli(tmp_path, "query", text, "--store", str(store), "--weight", "text=0", "--k", "20", "--json",
                  env=engine_env("tantivy"))
    assert out.returncode == 0, out.stderr
    return [(r["id"], round(r["sources"]["bm25"]["score"], 4)) for r in json.loads(out.stdout)["results"]
            if "bm25" in r["sources"]]


def test_damaged_tantivy_index_is_one_line_naming_the_fix(tmp_path: Path, tantivy_store: Path) -> None:
    """The tantivy engine's index beside the file is derived from SQLite: when its segment files
    are cut short (a disk that lost their tails), a query says so in one line and names the fix."""
    store = copy_store(tantivy_store, tmp_path / "s.db", with_index=True)
    segments = [f for f in lexical_index(store).iterdir() if f.suffix in (".idx", ".term", ".pos")]
    assert segments, sorted(f.name for f in lexical_index(store).iterdir())
    for f in segments:
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])
    out = run_cli(tmp_path, "query", "pans", "--store", str(store), env=engine_env("tantivy"))
    assert out.returncode == 1 and "tantivy index" in last_line(out)
    assert f"remove {lexical_index(store)}" in last_line(out)


def test_store_copied_without_its_tantivy_index_rebuilds_it_whole(tmp_path: Path, tantivy_store: Path) -> None:
    """The fix the message names (and a store copied as one file): the index is rebuilt from
    SQLite on the next open and BM25 answers as before."""
    expected = {text: bm25_results(tmp_path, tantivy_store, text) for text in ("pans", "steel", "cotton towel")}
    assert all(expected.values()), expected
    store = copy_store(tantivy_store, tmp_path / "s.db", with_index=False)
    assert {text: bm25_results(tmp_path, store, text) for text in expected} == expected



def test_the_engine_setting_names_the_engine_of_new_stores_only(tmp_path: Path) -> None:
    """docs/configuration.md: the setting picks the engine of NEW stores; an existing store
    keeps its own, whatever the setting says when it is opened."""
    for made, now in (("fts5", "tantivy"), ("tantivy", "fts5")):
        store = tmp_path / f"{made}.db"
        out = run_cli(tmp_path, "ingest", "sample", "--store", str(store), "--text-model", "none", "--no-images",
                      env=engine_env(made))
        assert out.returncode == 0, out.stderr
        out = run_cli(tmp_path, "query", "pans", "--store", str(store), "--json", env=engine_env(now))
        assert out.returncode == 0 and json.loads(out.stdout)["results"], out.stderr

# -- weak spots: read-only media and a full disk (tmpfs in a private mount namespace) -------------

def in_namespace(script: str, tmp_path: Path, timeout: float = 300,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to mount a private tmpfs")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {tmp_path}"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a mount namespace here: {probe.stderr.decode()[:200]}")
    env = {**os.environ, "CTIR_ES_CONFIG": str(tmp_path / "none.toml"), "CLI": CLI[0], "PY": sys.executable,
           **(env or {})}
    return subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", script], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False)


@pytest.mark.parametrize("engine", ["fts5", "tantivy"])
def test_store_on_read_only_media_is_queried_and_ingest_says_read_only(tmp_path: Path, engine: str) -> None:
    media = tmp_path / "media"
    media.mkdir()
    catalogue = write_jsonl(tmp_path / "c.jsonl", [])
    script = f"""
set -u
mount -t tmpfs -o size=20m tmpfs {media}
"$CLI" ingest sample --store {media}/s.db --text-model none --no-images --json > /dev/null || exit 90
mount -o remount,ro {media}
"$CLI" query "{CATEGORY}" --store {media}/s.db --json > {tmp_path}/query.json 2> {tmp_path}/query.err
echo "query=$?"
"$CLI" stats --store {media}/s.db --json > {tmp_path}/stats.json 2> {tmp_path}/stats.err
echo "stats=$?"
"$CLI" ingest jsonl {catalogue} --store {media}/s.db --text-model none --no-images 2> {tmp_path}/ingest.err
echo "ingest=$?"
"""
    out = in_namespace(script, tmp_path, env=engine_env(engine))
    assert "query=0" in out.stdout and "stats=0" in out.stdout and "ingest=1" in out.stdout, (
        out.stdout + out.stderr + (tmp_path / "query.err").read_text())
    assert len(json.loads((tmp_path / "query.json").read_text())["results"]) == 10
    assert json.loads((tmp_path / "stats.json").read_text())["products"] == 280
    err = (tmp_path / "ingest.err").read_text()
    assert "Traceback" not in err and "read-only" in err.strip().splitlines()[-1]


def test_disk_full_mid_ingest_names_the_cause_and_keeps_committed_batches(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    records = [json.dumps({"id": f"p{i}", "title": f"product {i}", "description": f"word{i} " * 800})
               for i in range(600)]
    catalogue = write_jsonl(tmp_path / "big.jsonl", records)
    script = f"""
set -u
mount -t tmpfs -o size=2500k tmpfs {disk}  # format 3's tables: ~1 MB of 32 KB pages before a batch fits
"$CLI" ingest jsonl {catalogue} --store {disk}/s.db --text-model none --no-images --batch-size 20 \
    > /dev/null 2> {tmp_path}/full.err
echo "full=$?"
"$PY" -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
print('kept', c.execute('select count(*) from products').fetchone()[0], c.execute('pragma integrity_check').fetchone()[0])" \
    {disk}/s.db
mount -o remount,size=60m {disk}
"$CLI" ingest jsonl {catalogue} --store {disk}/s.db --text-model none --no-images --json > {tmp_path}/resume.json \
    2> {tmp_path}/resume.err
echo "resume=$?"
"""
    out = in_namespace(script, tmp_path)
    assert "full=1" in out.stdout and "resume=0" in out.stdout, out.stdout + out.stderr
    err = (tmp_path / "full.err").read_text()
    assert "Traceback" not in err and "cannot rollback" not in err
    assert "is full" in err.strip().splitlines()[-1] and "re-run the same command to resume" in err
    kept = next(line.split() for line in out.stdout.splitlines() if line.startswith("kept"))
    assert int(kept[1]) > 0 and kept[2] == "ok"  # committed batches survived, file sound
    resumed = json.loads((tmp_path / "resume.json").read_text())
    assert resumed["skipped_resumed"] == int(kept[1]) and resumed["store_count"] == len(records) + len(GOOD)


def test_ingest_json_helper_is_used(tmp_path: Path) -> None:
    """The sample ingests through the helper the other reliability tests use."""
    report = ingest_json(tmp_path, "jsonl", write_jsonl(tmp_path / "c.jsonl", []), tmp_path / "s.db",
                         "--text-model", "none")
    assert report["indexed"] == len(GOOD)


def test_traceback_only_with_vv(tmp_path: Path, sample_store: Path) -> None:
    broken = tmp_path / "broken.db"
    broken.write_bytes(sample_store.read_bytes()[:5000])
    env = {**os.environ, "CTIR_ES_CONFIG": str(tmp_path / "none.toml")}
    quiet = subprocess.run([*CLI, "stats", "--store", str(broken)], capture_output=True, text=True, env=env,
                           check=False)
    loud = subprocess.run([*CLI, "-vv", "stats", "--store", str(broken)], capture_output=True, text=True, env=env,
                          check=False)
    assert quiet.returncode == loud.returncode == 1
    assert "Traceback" not in quiet.stderr and len(quiet.stderr.strip().splitlines()) == 1
    assert "Traceback" in loud.stderr and "is corrupted" in loud.stderr.strip().splitlines()[-1]
