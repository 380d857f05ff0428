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


def test_every_width_from_80_to_200_keeps_the_rank_and_whole_sources() -> None:
    """Between the narrow and the wide layout (120-130 columns) rich used to squeeze the rank
    column away and cut the sources: now the text columns give way and the rest stays whole."""
    for width in range(80, 201):
        lines = _render(width)
        assert all(len(line) <= width for line in lines), width
        header = next(line for line in lines if "title" in line)
        assert "┃  # ┃" in header and "score" in header and "sources" in header, width
        raw = "sources (name#rank:score)" in header
        for i in range(1, 4):
            row = next(line for line in lines if f"bm25#{i}" in line)
            assert row.startswith(f"│  {i} │"), (width, row)
            whole = f"bm25#{i}:10.5 text#{40 + i}:0.41" if raw else f"bm25#{i} text#{40 + i}"
            assert whole in row, (width, row)
        assert (search_footer(_response(), width).startswith("score: the fused score")) == raw
    assert "sources (name#rank:score)" in "".join(_render(120))  # raw scores from 120 columns on
    assert "id-1" in "".join(_render(130)) and "id-1" not in "".join(_render(120))


def test_three_sources_show_whole_from_100_columns_and_cut_only_at_80() -> None:
    """A learned index adds clip_ita: its rank-only list (25 characters) no longer fits the 18
    kept at 80 columns; wider, the text gives way and every list's rank shows (it was cut at
    125 columns, while the category column took 40)."""
    response = _response()
    for r in response.results:
        r.sources["clip_ita"] = SourceScore(r.rank + 2, 0.76)
    response.sources.append("clip_ita")

    def render(width: int) -> list[str]:
        console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
        console.print(search_table(response, width))
        return console.export_text().splitlines()

    for width in range(100, 201):
        lines = render(width)
        header = next(line for line in lines if "title" in line)
        raw = "sources (name#rank:score)" in header
        row = next(line for line in lines if "bm25#1" in line)
        whole = "bm25#1:10.5 text#41:0.41 clip_ita#3:0.76" if raw else "bm25#1 text#41 clip_ita#3"
        assert whole in row and all(len(line) <= width for line in lines), (width, row)
    narrow = next(line for line in render(80) if "bm25#1" in line)
    assert "bm25#1 text#41 cl…" in narrow and "Cast iron" in narrow
