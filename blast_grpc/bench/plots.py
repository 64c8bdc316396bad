"""PNG plots of a run (matplotlib, Agg backend): one per workload that has a curve.

* ``<stem>-fanout-efficiency.png``: efficiency (ideal ÷ measured) versus K, task parallelism on and off;
* ``<stem>-extraction-speedup.png``: speedup of chunks over one call versus page size, measured and ideal;
* ``<stem>-first-of-n-cdf.png``: task latency CDFs per N, measured and ideal;
* ``<stem>-concurrency.png``: throughput and p95 latency versus C.

A workload that did not run (or failed) simply has no plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .results import WorkloadResult


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    return plt, fig, ax


def _save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def fanout(res: WorkloadResult, path: Path) -> bool:
    eff = res.series.get("efficiency") or {}
    if not any(eff.values()):
        return False
    plt, fig, ax = _figure()
    for mode, style in (("parallel", "o-"), ("sequential", "s--")):
        pts = eff.get(mode) or []
        if pts:
            ax.plot([p["k"] for p in pts], [p["efficiency"] for p in pts], style, label=f"task parallelism {'on' if mode == 'parallel' else 'off'}")
    p = res.series.get("params", {})
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("K (subtasks)")
    ax.set_ylabel("efficiency = ideal critical path ÷ wall time")
    ax.set_ylim(0, 1.1)
    ax.set_title(f"Fan-out: S={p.get('steps')} steps, L={p.get('latency')} s per call, B={p.get('browsers')}")
    ax.legend()
    _save(plt, fig, path)
    return True


def extraction(res: WorkloadResult, path: Path) -> bool:
    speed = res.series.get("speedup") or {}
    if not speed:
        return False
    plt, fig, ax = _figure()
    for i, (label, pts) in enumerate(sorted(speed.items())):
        color = f"C{i}"
        xs = [p["chars"] for p in pts]
        ax.plot(xs, [p["speedup"] for p in pts], "o-", color=color, label=f"measured, {label}")
        ax.plot(xs, [p["ideal"] for p in pts], "--", color=color, alpha=0.7, label=f"ideal, {label}")
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("page text (characters)")
    ax.set_ylabel("speedup of chunks over one call")
    ax.set_title("Data-parallel extraction (latency grows with input tokens)")
    ax.legend()
    _save(plt, fig, path)
    return True


def first_of_n(res: WorkloadResult, path: Path) -> bool:
    cdf = res.series.get("cdf") or {}
    if not any(v.get("measured") for v in cdf.values()):
        return False
    plt, fig, ax = _figure()
    # Keys are N ("1", "3", ...) and "hedged" (hedged first-of-N), drawn last.
    for i, (n, data) in enumerate(sorted(cdf.items(), key=lambda kv: (not kv[0].isdigit(), int(kv[0] or 0)
                                                                      if kv[0].isdigit() else 0))):
        color = f"C{i}"
        name = f"N={n}" if n.isdigit() else n
        for key, style, label in (("measured", "-", f"{name} measured"), ("ideal", "--", f"{name} ideal")):
            xs = data.get(key) or []
            if xs:
                ax.step(xs, [(j + 1) / len(xs) for j in range(len(xs))], style, where="post", color=color,
                        label=label, alpha=1.0 if key == "measured" else 0.7)
    ax.set_xlabel("task latency (s)")
    ax.set_ylabel("fraction of tasks")
    ax.set_title("First-of-N: task latency CDF (lognormal step latency)")
    ax.legend(fontsize=8)
    _save(plt, fig, path)
    return True


def concurrency(res: WorkloadResult, path: Path) -> bool:
    levels = [lv for lv in res.series.get("levels") or [] if lv.get("ok")]
    if not levels:
        return False
    plt, fig, ax = _figure()
    cs = [lv["c"] for lv in levels]
    ax.plot(cs, [lv["throughput_per_min"] for lv in levels], "o-", color="C0", label="throughput")
    p = res.series.get("params", {})
    ideal = p.get("steps", 1) * p.get("latency", 1.0)
    ax.plot(cs, [c * 60 / ideal for c in cs], ":", color="C0", alpha=0.6, label="ideal throughput")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("C (concurrent tasks)")
    ax.set_ylabel("tasks / min", color="C0")
    ax2 = ax.twinx()
    ax2.plot(cs, [lv["p95_s"] for lv in levels], "s--", color="C3", label="p95 latency")
    ax2.axhline(ideal, color="C3", lw=0.8, ls=":", alpha=0.6)
    ax2.set_ylabel("p95 task latency (s)", color="C3")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax.legend(lines, labels, loc="upper left", fontsize=8)
    ax.set_title(f"Concurrency sweep: S={p.get('steps')} steps, L={p.get('latency')} s ({res.series.get('stop_reason', '')})",
                 fontsize=9)
    _save(plt, fig, path)
    return True


PLOTS: dict[str, tuple[str, Callable[[WorkloadResult, Path], bool]]] = {
    "fanout": ("fanout-efficiency", fanout),
    "extraction": ("extraction-speedup", extraction),
    "first_of_n": ("first-of-n-cdf", first_of_n),
    "concurrency": ("concurrency", concurrency),
}


def make_plots(results: list[WorkloadResult], out: Path, stem: str) -> list[str]:
    """Write the plots of the workloads that have one; returns their file names (relative to ``out``)."""
    written = []
    for res in results:
        entry = PLOTS.get(res.name)
        if entry is None or res.error:
            continue
        name = f"{stem}-{entry[0]}.png"
        if entry[1](res, out / name):
            written.append(name)
    return written
