"""The result table at the widths people use: 80 columns keeps rank, title, the leaf and root
category, the fused score and each source's rank on one line per result."""

from __future__ import annotations

from rich.console import Console

from ctir_es.cli.render import search_footer, search_table
from ctir_es.ranking.fusion import SourceScore
from ctir_es.results import SearchResponse, SearchResult

PATH = ["Kitchen & Dining", "Cookware", "Pots & Pans", "Woks & Kadhais"]


def _response(n: int = 3) -> SearchResponse:
    results = [
        SearchResult(i, f"id-{i}", f"Cast iron kadhai {i} litres with a long product title", [PATH], None, 0.02 - i / 1000,
                     {"bm25": SourceScore(i, 10.5), "text": SourceScore(40 + i, 0.41)})
        for i in range(1, n + 1)
    ]
    return SearchResponse("Kitchen & Dining > Cookware", "category", "rrf", ["bm25", "text"], results,
                          {"bm25": 1.0, "text": 0.3})


def _render(width: int) -> list[str]:
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(search_table(_response(), width))
    return console.export_text().splitlines()


def test_eighty_columns_show_leaf_and_root_and_source_ranks() -> None:
    lines = _render(80)
    assert all(len(line) <= 80 for line in lines)
    header = next(line for line in lines if "title" in line)
    assert all(col in header for col in ("#", "title", "category", "score", "sources"))
    rows = [n for n, line in enumerate(lines) if "bm25#" in line]
    assert len(rows) == 3  # one row per result: leaf on its first line, root below
    first = lines[rows[0]]
    assert "Cast iron kadhai" in first and "Woks & Kadhais" in first and "bm25#1 text#41" in first
    assert "Kitchen & Dining > …" in lines[rows[0] + 1]


def test_wide_terminals_add_ids_and_raw_scores() -> None:
    lines = _render(160)
    assert any("id-1" in line and "bm25#1:10.5" in line for line in lines)


def test_footer_promises_only_what_is_shown() -> None:
    assert "raw score" in search_footer(_response(), 160)
    narrow = search_footer(_response(), 80)
    assert "--json for raw scores" in narrow and len(narrow) <= 80
