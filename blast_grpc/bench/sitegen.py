"""Generate the benchmark's web pages into a directory (deterministic from a seed).

Two kinds of page, matching the scenarios in ``scenarios/bench.yaml``:

* **Item chains** (``chains/s{S}/``): ``k{K}.html`` is an index linking ``Item 1`` ..
  ``Item K``; each item is a chain of ``S`` pages ``item-{i}-{j}.html`` joined by a
  ``Next`` link, and only the last page states ``The code of item {i} is {code}.``
  An agent therefore needs exactly ``S`` steps per item: ``S - 1`` clicks and ``done``.
* **Long pages** (``long/page-{chars}.html``): prose of about ``chars`` characters
  with one sentence near the end, ``The bench code is {code}.``, for extract_content.
"""

from __future__ import annotations

import html
import random
from dataclasses import dataclass
from pathlib import Path

WORDS = ("river", "stone", "heron", "meadow", "current", "willow", "sediment", "otter", "ridge", "valley",
         "lichen", "estuary", "canopy", "drift", "harbor", "orchard", "granite", "marsh", "tide", "spruce")


def item_code(seed: int, item: int) -> str:
    """The code the last page of item ``item`` states (depends only on the seed and the item)."""
    rng = random.Random(f"{seed}:item:{item}")
    return f"ITEM{item}-{rng.randrange(1000, 9999)}"


def long_code(seed: int, chars: int) -> str:
    rng = random.Random(f"{seed}:long:{chars}")
    return f"BENCH-{rng.randrange(10000, 99999)}"


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n")


@dataclass
class BenchSite:
    """Where the generated pages are, relative to the site root."""

    root: Path
    seed: int

    def chain_index(self, steps: int, items: int) -> str:
        return f"chains/s{steps}/k{items}.html"

    def chain_start(self, steps: int, item: int) -> str:
        return f"chains/s{steps}/item-{item}-1.html"

    def long_page(self, chars: int) -> str:
        return f"long/page-{chars}.html"


def write_chains(site: BenchSite, steps: int, items: int) -> None:
    """Index pages ``k1..`` up to ``items`` links, and ``items`` chains of ``steps`` pages."""
    d = site.root / "chains" / f"s{steps}"
    d.mkdir(parents=True, exist_ok=True)
    for i in range(1, items + 1):
        for j in range(1, steps + 1):
            if j < steps:
                body = (f"<p>Item {i}, page {j} of {steps}. The code is further on.</p>"
                        f"<p><a href=\"item-{i}-{j + 1}.html\">Next</a></p>")
            else:
                body = f"<p>Item {i}, page {j} of {steps}.</p><p>The code of item {i} is {item_code(site.seed, i)}.</p>"
            (d / f"item-{i}-{j}.html").write_text(_page(f"Item {i} ({j}/{steps})", body), encoding="utf-8")
    for k in sorted({1, 2, 4, 8, 16, 32, 64, items}):
        if k > items:
            continue
        links = "".join(f"<li><a href=\"item-{i}-1.html\">Item {i}</a></li>" for i in range(1, k + 1))
        (d / f"k{k}.html").write_text(_page(f"{k} items", f"<p>Every item has a code.</p><ul>{links}</ul>"),
                                      encoding="utf-8")


def long_text(seed: int, chars: int) -> str:
    """About ``chars`` characters of paragraphs; the bench code sentence sits in the last 2 %."""
    rng = random.Random(f"{seed}:text:{chars}")
    paras: list[str] = []
    total = 0
    secret = f"The bench code is {long_code(seed, chars)}."
    placed = False
    while total < chars:
        words = [rng.choice(WORDS) for _ in range(rng.randint(60, 110))]
        para = " ".join(words).capitalize() + "."
        if not placed and total > chars * 0.98:
            para = f"{para} {secret}"
            placed = True
        paras.append(para)
        total += len(para) + 1
    if not placed:
        paras.append(secret)
    return "\n".join(paras)


def write_long_page(site: BenchSite, chars: int) -> None:
    d = site.root / "long"
    d.mkdir(parents=True, exist_ok=True)
    body = "".join(f"<p>{html.escape(p)}</p>" for p in long_text(site.seed, chars).split("\n"))
    (d / f"page-{chars}.html").write_text(_page(f"A long page of {chars} characters", body), encoding="utf-8")


def generate(root: Path, seed: int, chain_steps: list[int], max_items: int, long_chars: list[int]) -> BenchSite:
    """Write every page the run needs under ``root``."""
    site = BenchSite(root, seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(_page("blast-grpc bench", "<p>Generated pages.</p>"), encoding="utf-8")
    for s in sorted(set(chain_steps)):
        write_chains(site, s, max_items)
    for chars in long_chars:
        write_long_page(site, chars)
    return site
