"""The MiniWoB++ suite's pages: the unmodified ``html/`` folder of ``miniwob==1.1.0``, served on loopback.

``make test`` fetches the folder first (``make miniwob``); run directly, the fixture
fetches it itself, so a fresh clone works either way. The suite uses the session's
shared engine and simulated model (which runs the ``miniwob`` policy).
"""

from __future__ import annotations

from typing import Iterator

import pytest

from blast_grpc.demo_site.server import DemoSite
from blast_grpc.miniwob.fetch import ensure_html


@pytest.fixture(scope="session")
def miniwob_site() -> Iterator[DemoSite]:
    with DemoSite(host="127.0.0.1", port=0, pages_dir=ensure_html()) as s:
        yield s
