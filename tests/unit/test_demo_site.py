"""The demo site: page content matches facts.py, the access log, the /_slow hook and the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from blast_grpc.demo_site import ARTICLE_CODE, GORILLAS, PAGES_DIR, DemoSite, order_code
from blast_grpc.demo_site.make_article import render_article

REPO = Path(__file__).resolve().parents[2]


class _Links(HTMLParser):
    """Collects (anchor text, href) pairs and form controls."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "a":
            self._href, self._text = dict(attrs).get("href"), []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append(("".join(self._text), self._href))
            self._href = None


def _parse(html: str) -> _Links:
    p = _Links()
    p.feed(html)
    return p


def _visible_text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
def site():
    with DemoSite() as s:
        yield s


def test_index_links_every_continent_and_extra_pages(site: DemoSite) -> None:
    r = httpx.get(site.url + "index.html")
    assert r.status_code == 200
    assert "<title>Gorilla Records</title>" in r.text
    links = dict(_parse(r.text).links)
    for g in GORILLAS.values():
        assert links[g.continent] == g.page
    assert links["Long article"] == "article.html"
    assert links["Order form"] == "form.html"
    # "/" serves the index too.
    assert httpx.get(site.url).text == r.text


@pytest.mark.parametrize("continent", list(GORILLAS))
def test_continent_page_states_the_fact_once_among_decoys(site: DemoSite, continent: str) -> None:
    g = GORILLAS[continent]
    r = httpx.get(site.url + g.page)
    assert r.status_code == 200
    assert f"<title>{continent}</title>" in r.text
    text = _visible_text(r.text)
    assert text.count(g.sentence) == 1
    # A sloppy regex lands on a decoy gorilla that appears before the real one.
    sloppy = re.search(r"([A-Z][a-z]+), weighing (\d+) kg", text)
    assert sloppy is not None and sloppy.group(1) != g.name
    assert ("Back to index", "index.html") in _parse(r.text).links


def test_facts_are_distinct() -> None:
    names = [g.name for g in GORILLAS.values()]
    weights = [g.kg for g in GORILLAS.values()]
    assert len(set(names)) == len(names) == 6
    assert len(set(weights)) == len(weights) == 6


def test_article_is_long_and_hides_the_code_at_the_end(site: DemoSite) -> None:
    html = httpx.get(site.url + "article.html").text
    text = _visible_text(html)
    assert 60_000 <= len(text) <= 100_000
    sentence = f"The secret river code is {ARTICLE_CODE}."
    assert text.count(ARTICLE_CODE) == 1 and text.count("secret") == 1
    assert len(text) - text.index(sentence) < 500  # near the very end
    assert html == render_article()  # committed output matches the generator


def test_article_check_mode_detects_a_stale_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from blast_grpc.demo_site import make_article

    stale = tmp_path / "article.html"
    stale.write_text("old", encoding="utf-8")
    monkeypatch.setattr(make_article, "OUTPUT", stale)
    assert make_article.main(["--check"]) == 1
    assert make_article.main([]) == 0
    assert make_article.main(["--check"]) == 0
    assert stale.read_text(encoding="utf-8") == render_article()


def test_form_submits_item_and_size_to_order_page(site: DemoSite) -> None:
    tags = _parse(httpx.get(site.url + "form.html").text).tags
    form = next(a for t, a in tags if t == "form")
    assert form["action"] == "order.html" and form["method"] == "get"
    item = next(a for t, a in tags if t == "input" and a.get("name") == "item")
    assert item["type"] == "text" and item["placeholder"] == "Item name"
    assert [a["value"] for t, a in tags if t == "option"] == ["small", "medium", "large"]
    assert any(t == "select" and a.get("name") == "size" for t, a in tags)
    assert any(t == "button" and a.get("type") == "submit" for t, a in tags)
    order = httpx.get(site.url + "order.html?item=x&size=small").text
    assert "confirmationCode" in order and "Order confirmed: " in order


@pytest.mark.parametrize(
    ("item", "size", "code"),
    # Produced by the page's own JavaScript in Chromium (--dump-dom on order.html).
    [
        ("Blue Teapot", "large", "A5344819"),
        ("banana", "small", "B058B30B"),
        ("Ünïcode ☃ 𝄞", "medium", "62F6C259"),
        ("a+b & c", "medium", "B3A8A345"),
    ],
)
def test_order_code_mirrors_the_page_javascript(item: str, size: str, code: str) -> None:
    assert order_code(item, size) == code


def test_access_log_records_paths_in_order(site: DemoSite) -> None:
    with httpx.Client(base_url=site.url) as c:
        c.get("/index.html")
        c.get("/asia.html")
        c.get("/order.html?item=Hat&size=large")
        assert c.get("/missing.html").status_code == 404
        served = c.get("/_access_log")
    expected = ["/index.html", "/asia.html", "/order.html?item=Hat&size=large", "/missing.html"]
    assert site.access_log() == expected
    assert served.json() == expected  # the log request itself is not recorded
    site.clear_access_log()
    assert site.access_log() == []


def test_access_log_is_thread_safe(site: DemoSite) -> None:
    def fetch(n: int) -> None:
        with httpx.Client() as c:
            for _ in range(n):
                c.get(site.url + "index.html")

    threads = [threading.Thread(target=fetch, args=(10,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert site.access_log() == ["/index.html"] * 40


def test_slow_page_waits_without_blocking_others(site: DemoSite) -> None:
    result: dict[str, float] = {}

    def slow() -> None:
        t0 = time.monotonic()
        r = httpx.get(site.url + "_slow?seconds=0.6")
        result["elapsed"] = time.monotonic() - t0
        result["ok"] = float("0.6 seconds" in r.text)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    assert httpx.get(site.url + "index.html").status_code == 200
    assert time.monotonic() - t0 < 0.4
    t.join()
    assert result["elapsed"] >= 0.6 and result["ok"] == 1.0
    assert "/_slow?seconds=0.6" in site.access_log()


@pytest.mark.parametrize("bad", ["abc", "-1", "301", "nan"])
def test_slow_rejects_bad_seconds_and_keeps_serving(site: DemoSite, bad: str) -> None:
    r = httpx.get(site.url + f"_slow?seconds={bad}")
    assert r.status_code == 400
    assert "seconds must be a number" in r.text and bad in r.text
    assert httpx.get(site.url + "index.html").status_code == 200


def test_stop_ends_slow_requests_and_frees_the_port() -> None:
    site = DemoSite().start()
    url = site.url
    result: dict[str, float] = {}

    def slow() -> None:
        t0 = time.monotonic()
        try:
            httpx.get(url + "_slow?seconds=30", timeout=10)
        except httpx.HTTPError:
            pass
        result["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.2)
    site.stop()
    t.join(timeout=5)
    assert result["elapsed"] < 5
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "index.html")
    with pytest.raises(RuntimeError, match="not started"):
        _ = site.url


def test_missing_pages_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pages directory"):
        DemoSite(pages_dir=tmp_path / "nope")


def test_pages_dir_has_the_expected_files() -> None:
    names = {p.name for p in PAGES_DIR.glob("*.html")}
    assert {"index.html", "article.html", "form.html", "order.html"} | {g.page for g in GORILLAS.values()} == names


def test_cli_writes_ready_file_and_exits_on_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "blast_grpc.demo_site", "--port", "0", "--ready-file", str(ready)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            assert time.monotonic() < deadline, "demo site did not become ready"
            time.sleep(0.05)
        url = json.loads(ready.read_text())["url"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url) and not url.endswith(":0/")
        assert "Gorilla Records" in httpx.get(url + "index.html").text
        assert httpx.get(url + "_access_log").json() == ["/index.html"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
