"""``python -m blast_grpc.bench``: run the workloads, write JSON, a Markdown table and PNG plots.

::

    python -m blast_grpc.bench                      # the full suite (~15 min on 2 cores)
    python -m blast_grpc.bench --quick --only fanout --out /tmp/b
    python -m blast_grpc.bench --list

Writes ``<out>/<date>.json``, ``<out>/<date>.md`` and ``<out>/<date>-<plot>.png``, and the same
under stable names (``latest.json``, ``latest.md``, ``latest-<plot>.png``); engine and sim logs
go to ``<out>/logs/<time>/``. Every random choice — generated
pages, sampled model latencies, the Monte Carlo ideals — comes from ``--seed``. Exits 1
when a workload failed (its error is in the JSON and the table), else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import plots, sitegen
from .context import BenchContext
from .results import WorkloadResult, build_document, loadavg, machine_info, markdown, write_json
from .servers import TimedSite
from .workloads import WORKLOADS
from .workloads import extraction as extraction_workload

DEFAULT_OUT = Path("bench/results")
CHAIN_STEPS = [1, 2, 3, 6]  # every chain length a workload uses
MAX_ITEMS = 16


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m blast_grpc.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny configuration (the smoke test; < 60 s per workload)")
    p.add_argument("--seed", type=int, default=1, help="seed of pages, sampled latencies and Monte Carlo (default 1)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    p.add_argument("--only", action="append", metavar="WORKLOAD",
                   help=f"run only these (repeatable or comma-separated): {', '.join(WORKLOADS)}")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    return p


def selected(only: list[str] | None) -> list[str]:
    if not only:
        return list(WORKLOADS)
    names = [n.strip() for item in only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload {unknown[0]!r}; choose from: {', '.join(WORKLOADS)}")
    return [n for n in WORKLOADS if n in names]


async def run_suite(names: list[str], *, seed: int, quick: bool, out: Path) -> tuple[dict[str, object], Path]:
    """Run ``names`` and write the outputs; returns the document and the Markdown path."""
    started = dt.datetime.now().astimezone()
    load_before = loadavg()
    machine = machine_info()
    os.makedirs(out, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="blast-bench-"))
    results: list[WorkloadResult] = []
    try:
        long_chars = extraction_workload.Params.for_mode(quick).sizes if "extraction" in names else []
        pages = sitegen.generate(workdir / "site", seed, CHAIN_STEPS, MAX_ITEMS, long_chars)
        with TimedSite(pages.root) as site:
            ctx = BenchContext(seed=seed, quick=quick, workdir=workdir, site=site, pages=pages,
                               log_dir=out / "logs" / started.strftime("%Y-%m-%dT%H%M%S"))
            for name in names:
                print(f"bench: {name} ...", file=sys.stderr, flush=True)
                t0 = time.monotonic()
                try:
                    res = await WORKLOADS[name].run(ctx)
                except Exception as exc:  # one broken workload must not lose the others' numbers
                    traceback.print_exc()
                    res = WorkloadResult(name, error=f"{type(exc).__name__}: {exc}")
                res.seconds = time.monotonic() - t0
                print(f"bench: {name} done in {res.seconds:.0f}s{' (FAILED)' if res.error else ''}",
                      file=sys.stderr, flush=True)
                results.append(res)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    stem = started.strftime("%Y-%m-%d")
    plot_files = plots.make_plots(results, out, stem)
    profile = {r.name: r.series.get("params", {}) for r in results}
    doc = build_document(results, seed=seed, quick=quick, profile=profile, machine=machine,
                         load_before=load_before, load_after=loadavg(), started=started, plots=plot_files)
    write_json(doc, out / f"{stem}.json")
    md = out / f"{stem}.md"
    md.write_text(markdown(doc, plot_files), encoding="utf-8")
    # latest.*: the same run under stable names (what the README links and what gets committed)
    shutil.copyfile(out / f"{stem}.json", out / "latest.json")
    latest_plots = []
    for name in plot_files:
        latest = "latest-" + name.removeprefix(f"{stem}-")
        shutil.copyfile(out / name, out / latest)
        latest_plots.append(latest)
    (out / "latest.md").write_text(markdown(doc, latest_plots), encoding="utf-8")
    return doc, md


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for name, mod in WORKLOADS.items():
            print(f"{name:12} {(mod.__doc__ or '').strip().splitlines()[0]}")
        return 0
    names = selected(args.only)
    doc, md = asyncio.run(run_suite(names, seed=args.seed, quick=args.quick, out=args.out))
    print(md.read_text(encoding="utf-8"))
    print(f"bench: wrote {md} and {md.with_suffix('.json')}", file=sys.stderr)
    failed = [name for name, w in doc["workloads"].items() if w["error"]]  # type: ignore[attr-defined]
    return 1 if failed else 0

