"""The bench suite runs and writes well-formed output (no timing is asserted).

One run of ``python -m blast_grpc.bench --quick`` on two small workloads — the data-parallel
extraction (real Chromium, reader processes, the simulated model) and first-of-N (an
engine with racing copies) — into a temporary directory; then the JSON schema, the
Markdown table and the PNG files are checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Whichever test runs first pays for the run (a module fixture); a loaded machine may be slow.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ["extraction", "first_of_n"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "blast_grpc.bench", "--quick", "--seed", "7", "--out", str(out),
         "--only", ",".join(WORKLOADS)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    return out, proc


def _doc(out: Path) -> dict[str, Any]:
    files = [p for p in out.glob("*.json") if p.name != "latest.json"]
    assert len(files) == 1, sorted(p.name for p in out.iterdir())
    return dict(json.loads(files[0].read_text()))


def test_the_quick_suite_exits_cleanly(run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    _, proc = run
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def test_json_has_the_schema(run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = run
    doc = _doc(out)
    assert doc["schema"] == 1 and doc["seed"] == 7 and doc["quick"] is True
    for key in ("cpu_count", "cpu_model", "memory_total_gb", "python", "chromium", "git_commit"):
        assert key in doc["machine"], key
    assert set(doc["workloads"]) == set(WORKLOADS)
    assert all(not w["error"] for w in doc["workloads"].values()), doc["workloads"]
    assert doc["rows"], "no figures"
    for row in doc["rows"]:
        for key in ("workload", "figure", "params", "measured", "ideal", "ratio", "unit"):
            assert key in row, (key, row)
        assert row["workload"] in WORKLOADS and isinstance(row["params"], dict)
        for key in ("measured", "ideal", "ratio"):
            assert row[key] is None or isinstance(row[key], (int, float)), (key, row)
    assert {r["workload"] for r in doc["rows"]} == set(WORKLOADS)
    assert (out / "latest.json").read_text() == next(p for p in out.glob("2*.json")).read_text()


def test_markdown_table_parses(run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = run
    doc = _doc(out)
    md = next(p for p in out.glob("2*.md")).read_text()
    lines = md.splitlines()
    start = lines.index("## All figures")
    table = [line for line in lines[start + 1:] if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header == ["workload", "figure", "parameters", "measured", "ideal", "ratio", "note"]
    assert set(table[1].replace("|", "").split()) == {"---"}
    body = table[2:2 + len(doc["rows"])]
    assert len(body) == len(doc["rows"])
    for line, row in zip(body, doc["rows"], strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(header), line
        assert cells[0] == row["workload"]
        ratio = cells[5]
        assert ratio == "n/a" if row["ratio"] is None else float(ratio) == pytest.approx(row["ratio"], abs=0.006)


def test_plots_are_png_files(run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = run
    doc = _doc(out)
    assert len(doc["plots"]) == 2, doc["plots"]  # extraction speedup, first-of-N CDF
    md = next(p for p in out.glob("2*.md")).read_text()
    for name in doc["plots"]:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name
        assert f"]({name})" in md
