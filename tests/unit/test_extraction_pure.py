"""Pure parts of data-parallel extraction: ``merge_partials``, block names and slices."""

from __future__ import annotations

import json
import os
import re

import pytest

from blast_grpc.extraction import ChunkRef, merge_partials
from blast_grpc.extraction.blocks import SHM_DIR, check_owner_tag, create_block, read_slice, release_block

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
        cuts = [0, len(text[:8].encode()), len(text[:15].encode()), len(data)]  # on character boundaries
        spans = [(a, b - a) for a, b in zip(cuts, cuts[1:], strict=False)]
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
