"""extract_content on real long pages: Python's own HTML docs (Debian python3-doc) served on loopback.

The session's engine runs real tasks (tests/sim/scenarios/pydocs.yaml): the agent opens a
long page and asks one question with extract_content. The worker sends the page's HTML to
a reader process (Markdown, structure-aware chunks) and the chunk calls run at once; the
simulated mini model answers each from its own chunk only (a regex over the CONTENT it
was sent) and says {"found": false} otherwise, so the right merged answer shows that the
chunk holding the fact was read whole: a signature in the middle of a table-less section
of library/stdtypes.html, and a table row (with its cells) near the end of datetime.html.
"""

from __future__ import annotations

import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from blast_grpc import Client
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.pydocs import find_pydocs

from ..conftest import Sim

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def pydocs() -> Iterator[str]:
    """Python's HTML docs on 127.0.0.1 (port 0); yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(find_pydocs())))
    thread = threading.Thread(target=server.serve_forever, name="pydocs-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _extraction_requests(sim: Sim, query: str) -> list[str]:
    """The CONTENT of every extraction request the model received for ``query``."""
    out = []
    for raw in sim.requests():
        body = json.loads(raw)
        user = body["messages"][-1]["content"]
        if isinstance(user, str) and user.startswith(f"QUERY: {query}\nCONTENT:\n"):
            out.append(user.split("\nCONTENT:\n", 1)[1])
    return out


async def _ask(client: Client, sim: Sim, url: str, query: str) -> tuple[pb.TaskEvent, dict[str, Any], list[str]]:
    sim.reset()
    events = [ev async for ev in client.run(f"In the python docs at {url} extract: {query}", initial_url=url,
                                            stream=True)]
    details = [json.loads(e.step.detail) for e in events if e.HasField("step") and e.step.detail]
    extraction = next(d for d in details if "chunks" in d)
    return events[-1], extraction, _extraction_requests(sim, query)


async def test_a_signature_deep_in_stdtypes(client: Client, sim: Sim, pydocs: str) -> None:
    query = "What is the signature of str.removeprefix?"
    last, extraction, contents = await _ask(client, sim, pydocs + "library/stdtypes.html", query)
    assert last.HasField("completed") and last.completed.success, str(last)
    assert json.loads(last.completed.result) == {"found": True, "signature": "str.removeprefix(*prefix*, */*)"}
    # 700 KB of HTML became ~200 K characters of Markdown, cut into 16 chunks read at once.
    assert extraction["chars"] > 150_000 and extraction["chunks"] == 16 and extraction["unread"] == 0, extraction
    assert len(contents) == extraction["chunks"]
    assert all(len(c) <= 2 * 20_000 for c in contents)  # no call saw the whole page
    holding = [i for i, c in enumerate(contents) if "str.removeprefix(*prefix*" in c]
    assert holding and all(len(c) < extraction["chars"] // 4 for c in contents)
    assert not any("Previous topic" in c for c in contents)  # the sidebar (role=navigation) was dropped


async def test_a_table_row_deep_in_datetime(client: Client, sim: Sim, pydocs: str) -> None:
    query = 'Give the table line mentioning "`%j`"'
    last, extraction, contents = await _ask(client, sim, pydocs + "library/datetime.html", query)
    assert last.HasField("completed") and last.completed.success, str(last)
    answer = json.loads(last.completed.result)
    found = answer if isinstance(answer, list) else [answer]
    lines = [a["line"] for a in found if a.get("found")]
    # The row arrives whole, as a Markdown table row with its cells (innerText flattened tables).
    assert "| `%j` | Day of the year as a zero-padded decimal number. | 001, 002, …, 366 | (9) |" in lines, lines
    assert extraction["chunks"] >= 8 and extraction["unread"] == 0, extraction
    # Deep in the page: not in the chunk that opens it. (Positions come from the text: the calls
    # run at once, so the model receives the chunks in any order.)
    row_chunks = {i for i, c in enumerate(contents) if "| `%j` | Day of the year" in c}
    opening = {i for i, c in enumerate(contents) if "Basic date and time types" in c}
    assert row_chunks and opening and not row_chunks & opening, (row_chunks, opening)
    for c in contents:  # every chunk that has part of the format-code table starts it with the header
        rows = [ln for ln in c.split("\n") if ln.startswith("| `%")]
        if rows:
            assert "| Directive | Meaning | Example | Notes |" in c
