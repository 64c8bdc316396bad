"""Pure parts of data-parallel extraction: ``split_chunks``, ``merge_partials``, block names and slices."""

from __future__ import annotations

import json
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blast_grpc.extraction import ChunkRef, merge_partials, split_chunks
from blast_grpc.extraction.blocks import SHM_DIR, check_owner_tag, create_block, read_slice, release_block

# --- split_chunks ------------------------------------------------------------------------------


def _check_cover(data: bytes, spans: list[tuple[int, int]], chunk: int, overlap: int) -> None:
    """Every invariant split_chunks promises, for any input."""
    assert spans[0][0] == 0
    assert sum(1 for _ in spans) >= 1
    last_off, last_len = spans[-1]
    assert last_off + last_len == len(data)
    for (off, n), (next_off, _) in zip(spans, spans[1:], strict=False):
        assert off < next_off <= off + n, "no gap, and always moving forward"
        assert off + n - next_off <= overlap + 3, "overlap is about what was asked (plus < 1 character)"
    for off, n in spans:
        assert n > 0
        data[off: off + n].decode("utf-8")  # raises if the span cuts a character
        assert n <= chunk or len(data[off: off + n].decode("utf-8")) == 1, "only one wide character may exceed"


@settings(max_examples=300, deadline=None)
@given(text=st.text(min_size=1, max_size=300), chunk=st.integers(1, 60), data=st.data())
def test_split_chunks_covers_everything_on_character_boundaries(text: str, chunk: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, chunk - 1))
    raw = text.encode("utf-8")
    spans = split_chunks(raw, chunk, overlap)
    _check_cover(raw, spans, chunk, overlap)
    # Gluing the non-overlapping parts back together gives the text back.
    starts = [off for off, _ in spans] + [len(raw)]
    assert b"".join(raw[a:b] for a, b in zip(starts, starts[1:], strict=False)) == raw


def test_split_chunks_multibyte_text_never_cuts_a_character() -> None:
    raw = ("héron 鷺 🐦 " * 50).encode("utf-8")  # 1-, 2-, 3- and 4-byte characters
    for chunk, overlap in [(7, 3), (10, 0), (16, 5), (5, 4)]:
        spans = split_chunks(raw, chunk, overlap)
        _check_cover(raw, spans, chunk, overlap)
        for off, n in spans:
            assert raw[off] & 0xC0 != 0x80, f"chunk starts mid-character at {off}"
            assert off + n == len(raw) or raw[off + n] & 0xC0 != 0x80, f"chunk ends mid-character at {off + n}"


def test_split_chunks_ascii_overlap_is_exact() -> None:
    raw = bytes(range(32, 127)) * 20
    spans = split_chunks(raw, 100, 10)
    assert len(spans) > 10
    for (off, n), (next_off, _) in zip(spans, spans[1:], strict=False):
        assert n == 100
        assert off + n - next_off == 10
    assert spans[-1][0] + spans[-1][1] == len(raw)


def test_split_chunks_tiny_and_empty_inputs() -> None:
    assert split_chunks(b"", 10, 2) == []
    assert split_chunks(b"a", 10, 2) == [(0, 1)]
    assert split_chunks(b"abc", 3, 1) == [(0, 3)]
    assert split_chunks(b"abcd", 3, 1) == [(0, 3), (2, 2)]
    assert split_chunks(b"abcd", 1, 0) == [(0, 1), (1, 1), (2, 1), (3, 1)]
    # A character wider than the chunk is taken whole rather than cut.
    assert split_chunks("🐦x".encode(), 2, 1) == [(0, 4), (4, 1)]


@pytest.mark.parametrize("chunk,overlap", [(0, 0), (5, 5), (5, 6), (5, -1)])
def test_split_chunks_rejects_bad_sizes(chunk: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        split_chunks(b"hello", chunk, overlap)


# --- merge_partials ----------------------------------------------------------------------------

FOUND = '{"found": true, "code": "HERON-7352"}'
NOT_FOUND = '{"found": false}'


@pytest.mark.parametrize("partials,expected", [
    pytest.param([], "", id="nothing"),
    pytest.param([FOUND], FOUND, id="one-json"),
    pytest.param([NOT_FOUND, NOT_FOUND, FOUND], FOUND, id="found-only-in-last-chunk"),
    pytest.param([FOUND, NOT_FOUND, FOUND], FOUND, id="same-fact-in-two-overlapping-chunks"),
    pytest.param([NOT_FOUND, '{"found": false, "why": "absent"}'], NOT_FOUND, id="all-not-found-first-kept"),
    pytest.param(['{"code": null}', '{"code": "A"}'], '{"code": "A"}', id="null-values-say-nothing"),
    pytest.param(['{"a": "", "b": [], "c": {}}', "{}"], '{"a": "", "b": [], "c": {}}', id="all-empty-first-kept"),
    pytest.param(["```json\n" + NOT_FOUND + "\n```", "```json\n" + FOUND + "\n```"], FOUND, id="code-fences"),
    pytest.param(["The content does not contain the answer.", "The code is HERON-7352."],
                 "The code is HERON-7352.", id="text-not-found-dropped"),
    pytest.param(["No information about that here.", "I could not find it.", "Not found."],
                 "No information about that here.", id="text-all-not-found-first-kept"),
    pytest.param(["", "  ", "Answer A"], "Answer A", id="text-empty-dropped"),
    pytest.param(["Answer A", "Answer B"], "Answer A\nAnswer B", id="text-joined-in-order"),
    pytest.param(["Answer A", " Answer A\n"], "Answer A", id="text-duplicates-merged"),
    pytest.param(["", ""], "", id="all-empty"),
    pytest.param([NOT_FOUND, "The code is HERON-7352."], "The code is HERON-7352.", id="mixed-json-and-text"),
    pytest.param(["[1, 2]", "[3]"], "[1, 2]\n[3]", id="json-lists-are-text"),
])
def test_merge_partials(partials: list[str], expected: str) -> None:
    assert merge_partials(partials) == expected


def test_merge_partials_several_facts_become_a_json_list() -> None:
    merged = merge_partials([NOT_FOUND, '{"found": true, "code": "A-1"}', '{"found": true, "code": "B-2"}'])
    assert json.loads(merged) == [{"found": True, "code": "A-1"}, {"found": True, "code": "B-2"}]


def test_merge_partials_keeps_a_long_answer_that_mentions_not_found() -> None:
    long_answer = "The code is HERON-7352. " + "It is explained at length in the closing notes. " * 8 + (
        "A second code was not found.")
    assert merge_partials(["Not found.", long_answer]) == long_answer.strip()


# --- blocks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["", "w_1", "a/b", "x" * 33, "w 1"])
def test_owner_tag_must_be_safe_in_a_block_name(tag: str) -> None:
    with pytest.raises(ValueError):
        check_owner_tag(tag)


def test_block_round_trip_and_creator_unlinks() -> None:
    text = "héron 鷺 🐦 — the secret river code is HERON-7352."
    data = text.encode("utf-8")
    shm = create_block("unit-blocks", data)
    try:
        assert re.fullmatch(rf"blast_unit-blocks_{os.getpid()}_\d+", shm.name)
        assert (SHM_DIR / shm.name).exists()
        spans = split_chunks(data, 12, 4)
        parts = [read_slice(ChunkRef(shm.name, off, n)) for off, n in spans]
        assert parts == [data[off: off + n].decode("utf-8") for off, n in spans]
        assert parts[0].startswith("héron 鷺") and parts[-1].endswith("7352.")
        second = create_block("unit-blocks", b"x")
        assert second.name != shm.name
        release_block(second)
    finally:
        release_block(shm)
    assert not (SHM_DIR / shm.name).exists()
    with pytest.raises(FileNotFoundError):
        read_slice(ChunkRef(shm.name, 0, 1))
