"""The miniwob bench workload's pure parts: the generated large page and the prompt figures."""

from __future__ import annotations

import re
from pathlib import Path

from blast_grpc.bench.results import WorkloadResult
from blast_grpc.bench.workloads.miniwob import _prompt_rows, _prompt_samples, write_large_page


def test_large_page_has_the_asked_number_of_controls(tmp_path: Path) -> None:
    page = (tmp_path / write_large_page(tmp_path, 2000)).read_text()
    controls = re.findall(r"<(button|a |input|select)", page)
    assert len(controls) == 2000


def test_prompt_figures_and_targets() -> None:
    stats = {"prompts": {
        "gorilla": {"request_bytes": [4000, 6000], "prefix_share": [0.9], "observation_chars": [800, 900]},
        "miniwob/click-test": {"request_bytes": [99_000], "prefix_share": [0.1], "observation_chars": [10]},
    }}
    demo = _prompt_samples(stats)
    assert demo["request_bytes"] == [4000, 6000, 99_000]
    only = _prompt_samples(stats, "miniwob/")
    assert only["observation_chars"] == [10]
    res = WorkloadResult("miniwob")
    _prompt_rows(res, _prompt_samples({"prompts": {"g": stats["prompts"]["gorilla"]}}), 1)
    rows = {r.figure: r for r in res.rows}
    mean = rows["LLM request per step (demo site), mean"]
    assert mean.measured == 5.0 and mean.met is True
    share = rows["prefix share of the previous step's request (demo site), median"]
    assert share.measured == 0.9 and share.met is True
    res = WorkloadResult("miniwob")
    _prompt_rows(res, only, 1)
    rows = {r.figure: r for r in res.rows}
    assert rows["LLM request per step (demo site), mean"].met is False
    assert rows["prefix share of the previous step's request (demo site), median"].met is False
