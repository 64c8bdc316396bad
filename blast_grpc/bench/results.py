"""The result model of a bench run, and how it is written: JSON and a Markdown table.

Every figure is a ``Row``: ``workload``, ``figure`` (what was measured), ``params``,
``measured``, ``ideal`` (for the same run: what the simulated latency alone allows),
``ratio`` and ``unit``. ``ratio`` is always *how far from ideal*, 1.00 being ideal:
``measured ÷ ideal`` for times and costs (``better = "lower"``), ``ideal ÷ measured``
for throughputs and speedups (``better = "higher"``). A figure that could not be
measured has ``measured = null`` and says why in ``note``. Rows that compare with the
bar (BLAST 0.1.6 on this machine, and our targets) also carry ``target`` and ``blast``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
ROW_KEYS = ("workload", "figure", "params", "measured", "ideal", "ratio", "unit")


@dataclass
class Row:
    workload: str
    figure: str
    params: dict[str, Any]
    measured: float | None
    ideal: float | None
    unit: str
    better: str = "lower"  # "lower" or "higher"
    note: str = ""
    target: str | None = None
    blast: str | None = None
    met: bool | None = None
    ratio: float | None = None

    def __post_init__(self) -> None:
        self.measured = _finite(self.measured)
        self.ideal = _finite(self.ideal)
        if self.ratio is None and self.measured is not None and self.ideal is not None and self.ideal > 0 \
                and self.measured > 0:
            self.ratio = self.measured / self.ideal if self.better == "lower" else self.ideal / self.measured


def _finite(x: float | None) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class WorkloadResult:
    """What one workload produced: rows, raw series for the plots, and notes."""

    name: str
    rows: list[Row] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parents[2]).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: CPU, memory, OS, Python, Chromium, the code's commit."""
    import psutil

    from ..chromium import find_chromium

    try:
        chromium = find_chromium()
        version = subprocess.run([chromium, "--version"], capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as exc:  # the run itself will fail loudly; the info just says so
        chromium, version = "", f"not found: {exc}"
    return {
        "hostname": platform.node(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_total_gb": round(psutil.virtual_memory().total / 1e9, 2),
        "chromium": version,
        "chromium_path": chromium,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def build_document(results: list[WorkloadResult], *, seed: int, quick: bool, profile: dict[str, Any],
                   machine: dict[str, Any], load_before: list[float], load_after: list[float],
                   started: dt.datetime, plots: list[str]) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "suite": "blast-grpc bench",
        "date": started.isoformat(timespec="seconds"),
        "seed": seed,
        "quick": quick,
        "machine": machine,
        "load": {"before": load_before, "after": load_after},
        "profile": profile,
        "workloads": {r.name: {"seconds": round(r.seconds, 2), "error": r.error, "notes": r.notes,
                               "series": r.series} for r in results},
        "rows": [asdict(row) for r in results for row in r.rows],
        "plots": plots,
    }


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _num(x: float | None, unit: str = "") -> str:
    if x is None:
        return "n/a"
    a = abs(x)
    text = f"{x:.0f}" if a >= 1000 else f"{x:.1f}" if a >= 100 else f"{x:.2f}" if a >= 1 else f"{x:.3f}"
    return f"{text} {unit}".strip()


def _params(p: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items()).replace("|", "/")


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def markdown(doc: dict[str, Any], plot_names: list[str]) -> str:
    """The results as Markdown: a header, the bar table, the full table and the plots."""
    m = doc["machine"]
    lines = [
        f"# blast-grpc bench — {doc['date']}",
        "",
        f"Seed {doc['seed']}{' (quick mode)' if doc['quick'] else ''}; {m['cpu_count']} × {m['cpu_model']}, "
        f"{m['memory_total_gb']} GB; {m['chromium']}; Python {m['python']}; commit {m['git_commit'][:10]}"
        f"{' (dirty)' if m['git_dirty'] else ''}. Load average before {doc['load']['before']}, "
        f"after {doc['load']['after']}.",
        "",
        "Ratio = how far from ideal for the same run (1.00 = ideal): measured ÷ ideal for times, "
        "ideal ÷ measured for throughputs and speedups. Ideal = the simulated model's latency alone.",
        "",
    ]
    bar = [r for r in doc["rows"] if r.get("target") or r.get("blast")]
    if bar:
        lines += ["## Against the bar", "", "| figure | measured | target | BLAST 0.1.6 | met |",
                  "| --- | --- | --- | --- | --- |"]
        for r in bar:
            met = "n/a" if r["met"] is None else ("yes" if r["met"] else "no")
            lines.append(f"| {_cell(r['figure'])} | {_num(r['measured'], r['unit'])} | {_cell(r['target'] or '')} "
                         f"| {_cell(r['blast'] or '')} | {met} |")
        lines.append("")
    lines += ["## All figures", "", "| workload | figure | parameters | measured | ideal | ratio | note |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in doc["rows"]:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(f"| {r['workload']} | {_cell(r['figure'])} | {_params(r['params'])} "
                     f"| {_num(r['measured'], r['unit'])} | {_num(r['ideal'], r['unit'])} | {ratio} "
                     f"| {_cell(r['note'])} |")
    errors = {name: w["error"] for name, w in doc["workloads"].items() if w["error"]}
    if errors:
        lines += ["", "## Workloads that failed", ""] + [f"- {k}: {_cell(v)}" for k, v in errors.items()]
    notes = [(name, n) for name, w in doc["workloads"].items() for n in w["notes"]]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {name}: {n}" for name, n in notes]
    if plot_names:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plot_names]
    return "\n".join(lines) + "\n"
