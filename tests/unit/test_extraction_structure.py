"""Pure parts of the page → chunks path: HTML → Markdown, chunk sizes, structure-aware splitting,
and the simulated mini model answering from the chunk it is sent."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from blast_grpc.extraction.convert import html_to_markdown
from blast_grpc.extraction.markdown_chunks import chunk_size, plan_chunks, split_markdown
from blast_grpc.sim import load_scenarios
from blast_grpc.sim.protocol import parse_request
from blast_grpc.sim.rules import answer_extraction
from blast_grpc.sim.scenarios import parse_document

PAGE = """<html><head><title>Title only</title><script>var x = "script noise";</script></head><body>
<nav role="navigation"><a href="/a">Previous topic</a></nav>
<div class="sphinxsidebar" role="navigation"><p>Sidebar noise</p></div>
<h1>Built-in Types</h1>
<p>See <a href="https://docs.python.org/3/library/re.html">the re module</a> for patterns.</p>
<h2>Truth</h2>
<table><thead><tr><th>Operation</th><th>Result</th></tr></thead>
<tbody><tr><td><code>x or y</code></td><td>if x is false, then y</td></tr>
<tr><td><code>not x</code></td><td>True if x is false</td></tr></tbody></table>
<ul><li>first<ul><li>nested</li></ul></li><li>second</li></ul>
<footer>Copyright noise</footer>
</body></html>"""


def test_conversion_keeps_tables_headings_lists_and_links_and_drops_navigation() -> None:
    md = html_to_markdown(PAGE)
    assert "# Built-in Types" in md and "## Truth" in md
    assert "| Operation | Result |" in md and "| `not x` | True if x is false |" in md
    assert "[the re module](https://docs.python.org/3/library/re.html)" in md
    assert re.search(r"^\* first\n\s+\* nested", md, re.M), md
    for noise in ("Previous topic", "Sidebar noise", "Copyright noise", "script noise", "Title only"):
        assert noise not in md
    assert html_to_markdown("") == "" and html_to_markdown("<html><body> </body></html>") == ""


@pytest.mark.parametrize(("total", "expected_chunks"), [
    (5_000, 1),
    (20_000, 1),  # one full chunk, and under twice the minimum: one call
    (23_999, 2),  # over chunk_chars
    (36_000, 3),  # cut finer: 36_000 // 12_000
    (100_000, 8),  # cut finer than chunk_chars so the chunks run at once
    (320_000, 16),  # 16 full chunks
    (1_000_000, 50),  # more than fit in flight: full chunks
])
def test_chunk_size(total: int, expected_chunks: int) -> None:
    size = chunk_size(total, 20_000, 12_000, 16)
    assert -(-total // size) == expected_chunks


def _table(rows: int) -> str:
    body = "\n".join(f"| row{i} | value number {i} |" for i in range(rows))
    return f"| Key | Value |\n| --- | --- |\n{body}"


def test_a_table_is_cut_between_rows_with_its_header_repeated() -> None:
    text = "# Heading\n\nIntro paragraph.\n\n" + _table(200) + "\n\nAfter the table."
    chunks = split_markdown(text, 600, 100)
    assert len(chunks) > 5
    rows_seen = set()
    for c in chunks:
        lines = c.text.split("\n")
        rows = [ln for ln in lines if ln.startswith("| row")]
        for ln in rows:
            assert re.fullmatch(r"\| row(\d+) \| value number \1 \|", ln), ln  # never cut inside a row
            rows_seen.add(ln)
        if rows:
            assert "| Key | Value |\n| --- | --- |" in c.text  # every piece can be read with its columns
    assert len(rows_seen) == 200
    assert "After the table." in chunks[-1].text and chunks[0].text.startswith("# Heading")


def test_overlap_repeats_whole_blocks_and_spans_cover_the_text() -> None:
    paras = [f"Paragraph {i} " + "word " * 20 for i in range(40)]
    text = "\n\n".join(p.strip() for p in paras)
    chunks = split_markdown(text, 500, 150)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start < a.end  # overlapping
        shared = a.text.split("\n\n")[-1]
        assert b.text.startswith(shared)  # the overlap is the previous chunk's last whole block
        assert b.start <= a.end
    for c in chunks:
        assert c.text == text[c.start:c.end]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["# Head", "para one two", "| a | b |", "| --- | --- |", "", "```", "x" * 90,
                                 "* item", "  * sub"]), max_size=80),
       st.integers(20, 300), st.integers(0, 60))
def test_every_line_lands_in_some_chunk(lines: list[str], size: int, overlap: int) -> None:
    text = "\n".join(lines)
    chunks = split_markdown(text, size, overlap)
    got = "\n".join(c.text for c in chunks)
    for line in text.split("\n"):
        if line.strip():  # a line longer than a chunk is the only thing ever cut: in pieces of ``size``
            assert all(line[i:i + size] in got for i in range(0, len(line), size))
    assert not text.strip() or chunks


def test_plan_chunks_keeps_the_count_within_the_parallel_calls() -> None:
    # ~150 K characters in blocks of uneven size: whole blocks fill chunks unevenly, and
    # still no chunk is left waiting for a free call.
    text = "\n\n".join(("Sentence of a paragraph. " * (i % 7 + 3)).strip() for i in range(1000))
    assert 140_000 < len(text) <= 160_000
    for max_parallel in (8, 16):
        chunks = plan_chunks(text, 20_000, 2_000, max_parallel, 300)
        assert max_parallel - 2 <= len(chunks) <= max_parallel


def _ask(scenario_yaml: str, query: str, content: str) -> str:
    scenarios = load_scenarios([])
    scenarios.extractors.extend(parse_document(yaml.safe_load(scenario_yaml), "test").extractors)
    body = {"model": "m", "messages": [{"role": "system", "content": "x"},
                                       {"role": "user", "content": f"QUERY: {query}\nCONTENT:\n{content}"}]}
    return answer_extraction(scenarios, parse_request(body)).content or ""


def test_sim_extractor_finds_what_the_query_asks_for_only_in_its_chunk() -> None:
    doc = """
extractors:
  - query: 'line mentioning "(?P<needle>[^"]+)"'
    find: '(?m)^(?P<line>.*{needle}.*)$'
    answer: '{{"found": true, "line": "{line|json}"}}'
"""
    q = 'Give the line mentioning "cp1252"'
    row = '| cp1252 | windows-1252 | "Western" \\\\ Europe |'
    assert json.loads(_ask(doc, q, f"intro\n{row}\nmore")) == {"found": True, "line": row}
    assert json.loads(_ask(doc, q, "a chunk without it")) == {"found": False}
    # The needle is a literal, not a regex: "cp1252" does not match "cpX1252".
    assert json.loads(_ask(doc, 'the line mentioning "a.b"', "axb")) == {"found": False}
