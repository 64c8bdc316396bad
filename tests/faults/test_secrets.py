"""Secrets: the model types ``<secret>NAME</secret>``, the browser gets the value, nothing shows it.

The strict engine's secrets file holds ``ORDER_ITEM=hush-<12 hex>``. Scenario
``secret-order`` types the placeholder into the demo order form and reports the
confirmation line as it saw it; if it is ever shown a ``hush-...`` value (page text,
URL, tool result) it answers ``LEAK: ...`` instead. The order page echoes the item, so
the page text and URL the model sees must be redacted too.

``odd`` is an engine of its own with a secret full of characters that browsers encode
(``~ * space ! & < > " '``), a task database, the caches and ``logs_dir``: after scenario
``secret-order-encoded`` typed it into the GET form (the browser sends it
form-urlencoded; order.html puts ``encodeURIComponent`` of it in its title), every place a
value could be stored or sent is searched for every encoding of it.
"""

from __future__ import annotations

import html
import json
import logging
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import pytest
import pytest_asyncio

from blast_grpc import Engine
from blast_grpc.agent.secrets import RedactingFilter, SecretError, Secrets, parse_secrets
from blast_grpc.config import Settings
from blast_grpc.demo_site.facts import order_code
from blast_grpc.demo_site.server import DemoSite
from blast_grpc.logsetup import setup_logging

from ..conftest import Sim, engine_overrides
from .conftest import STRICT, StrictEngine, collect, final, stderr_to, steps, watch_all

PLACEHOLDER = "<secret>ORDER_ITEM</secret>"


@pytest.mark.asyncio
@pytest.mark.browser
async def test_a_secret_reaches_the_page_but_not_the_model_events_or_logs(strict: StrictEngine,
                                                                          site: DemoSite) -> None:
    value = strict.secret_value
    site.clear_access_log()
    events = await collect(strict.client, f"Order the secret item in size large at {site.url}form.html")
    done = final(events)
    assert done.HasField("completed") and done.completed.success, str(done)
    # The model saw the placeholder where the page shows the item, and the order is for the real value
    # (the confirmation code is computed by the page from what was submitted).
    assert done.completed.result == (f"I saw: Order confirmed: {PLACEHOLDER} (large), "
                                     f"confirmation {order_code(value, 'large')}")
    assert f"/order.html?item={value}&size=large" in site.access_log()
    typed = next(s for s in steps(events) if s.action.startswith("type("))
    assert PLACEHOLDER in typed.action and value not in typed.action
    assert any(f"item={PLACEHOLDER}" in s.url for s in steps(events))  # the URL is redacted, not dropped
    # Not one event, in any field, nor the task record, carries the value.
    everything = await watch_all(strict.client, events[0].task_id)
    assert len(everything) == len(events)
    leaks = [str(ev) for ev in everything if value in str(ev)]
    assert leaks == []
    assert value not in str(await strict.client.get_task(events[0].task_id))
    # The engine logs at debug level, every step included; the value is in none of it.
    log = strict.log.read_text(encoding="utf-8", errors="replace")
    assert "loaded 2 secrets from" in log and f"text='{PLACEHOLDER}'" in log  # the log covers the worker's steps
    assert f"order.html?item={PLACEHOLDER}&size=large" in log
    assert value not in log


def test_the_secrets_file_format() -> None:
    text = "# a comment\n\nexport TOKEN='a b#c'\nPLAIN=x1 # trailing\nQUOTED=\"q\"\nEMPTY=\nnot a line\n"
    assert parse_secrets(text) == {"TOKEN": "a b#c", "PLAIN": "x1", "QUOTED": "q"}
    assert Secrets.load("/nonexistent/secrets.env").names == []


def test_reveal_and_redact() -> None:
    s = Secrets({"CARD": "4111 1111", "PIN": "12&3"})
    assert s.reveal("pay <secret>CARD</secret> / <secret> PIN </secret>") == "pay 4111 1111 / 12&3"
    with pytest.raises(SecretError, match="no secret named CVV \\(available: CARD, PIN\\)"):
        s.reveal("<secret>CVV</secret>")
    # raw, URL-encoded (both ways) and JSON-escaped forms all come back as the placeholder
    assert s.redact("4111 1111|4111%201111|4111+1111|12%263") == (
        "<secret>CARD</secret>|<secret>CARD</secret>|<secret>CARD</secret>|<secret>PIN</secret>")
    assert "4111" not in s.prompt() and "<secret>CARD</secret>" in s.prompt()
    assert Secrets().prompt() == "" and Secrets().redact("4111 1111") == "4111 1111"


def test_log_records_are_redacted() -> None:
    secrets = Secrets({"KEY": "s3cr3t-value"})
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "typed %s into the page", ("s3cr3t-value",), None)
    try:
        raise RuntimeError("fill failed with s3cr3t-value")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactingFilter(secrets).filter(record)
    text = logging.Formatter().format(record)
    assert "s3cr3t-value" not in text
    assert text.startswith("typed <secret>KEY</secret> into the page\n")
    assert text.endswith("RuntimeError: fill failed with <secret>KEY</secret>")


def test_every_encoded_form_is_redacted() -> None:
    value = "hush-0123456789ab~Pa* ss!&<>\"'é"
    s = Secrets({"ODD": value, "SHORT": "hush"})
    for form in encodings(value):
        assert s.redact(f"[{form}]") == "[<secret>ODD</secret>]", form
    # a URL mixing forms: form-urlencoded query value after a raw path
    assert s.redact(f"/x?item={pct(value, FORM_SAFE, space='+')}&size=large") == (
        "/x?item=<secret>ODD</secret>&size=large")
    assert s.redact("hush hush-x") == "<secret>SHORT</secret> <secret>SHORT</secret>-x"  # longest value first
    assert s.redact("hush-0123456789ab~Pa* ss") == "<secret>SHORT</secret>-0123456789ab~Pa* ss"  # no partial value


def test_log_files_rotate_and_are_redacted(tmp_path: Path) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    settings = Settings(logs_dir=str(tmp_path / "logs"), log_file_max_bytes=2000, log_file_backups=2,
                        blastai_log_level="info")
    try:
        setup_logging(settings, "unit", secrets=Secrets({"KEY": "s3cr3t value"}))
        for i in range(100):
            logging.getLogger("blast_grpc.test").info("line %d typed s3cr3t+value and s3cr3t%%20value", i)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == ["unit.log", "unit.log.1", "unit.log.2"]
    texts = [(tmp_path / "logs" / f).read_text() for f in files]
    assert all(0 < len(t) <= 2000 + 200 for t in texts)
    assert "line 99 typed <secret>KEY</secret> and <secret>KEY</secret>" in texts[0]
    assert not any("s3cr3t" in t for t in texts)


# --- every encoding, everywhere --------------------------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
FORM_SAFE = "*-._"  # application/x-www-form-urlencoded (what a GET form sends)
URI_COMPONENT_SAFE = "-_.!~*'()"  # encodeURIComponent
URI_SAFE = URI_COMPONENT_SAFE + ";,/?:@&=+$#"  # encodeURI


def pct(value: str, safe: str, space: str = "", lower: bool = False) -> str:
    """Percent-encode like a browser's encoder that leaves ``safe`` alone (written here, not taken
    from urllib, whose idea of safe differs: it never encodes ``~``)."""
    out = []
    for c in value:
        if c in ALNUM or c in safe:
            out.append(c)
        elif c == " " and space:
            out.append(space)
        else:
            out.append("".join((f"%{b:02x}" if lower else f"%{b:02X}") for b in c.encode()))
    return "".join(out)


def encodings(value: str) -> list[str]:
    """The forms of ``value`` a browser, a page or a serializer may produce."""
    forms = [value]
    for lower in (False, True):
        forms += [pct(value, FORM_SAFE, "+", lower), pct(value, "", "", lower), pct(value, URI_COMPONENT_SAFE, "", lower),
                  pct(value, URI_SAFE, "", lower)]
    forms += [html.escape(value), html.escape(value, quote=False), "".join(f"&#{ord(c)};" for c in value),
              "".join(f"&#x{ord(c):x};" for c in value), json.dumps(value)[1:-1],
              json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1],
              "".join(f"\\u{ord(c):04x}" if not c.isalnum() else c for c in value)]
    return list(dict.fromkeys(forms))


@dataclass
class OddEngine:
    engine: Engine
    dir: Path
    value: str  # secret ODD_ITEM

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    def stored_files(self) -> list[Path]:
        """Every file the engine wrote: its databases (with WAL files), logs and stderr."""
        return sorted(p for p in self.dir.rglob("*") if p.is_file() and p.name != "secrets.env")


@pytest_asyncio.fixture(scope="module")
async def odd(sim: Sim) -> AsyncIterator[OddEngine]:
    with tempfile.TemporaryDirectory(prefix="blast-odd-secret-") as d:
        value = f"hush-{secrets.token_hex(6)}~Pa* ss!&<>\"'"
        root = Path(d)
        (root / "secrets.env").write_text(f"ODD_ITEM={value}\n")
        overrides = engine_overrides(
            sim, {"allow_parallelism": {"data": False}}, workers=1, secrets_file_path=str(root / "secrets.env"),
            blastai_log_level="debug", logs_dir=str(root / "logs"), task_db_path=str(root / "state" / "tasks.sqlite"),
            cache_results=True, cache_plans=True, persist_cache=True, cache_path=str(root / "cache" / "cache.sqlite"),
            gateway=True, server_port=0, **STRICT)
        with stderr_to(root / "stderr.log"):
            eng = await Engine.create(overrides=overrides)
        try:
            yield OddEngine(eng, root, value)
        finally:
            await eng.stop()


def leaks(haystack: bytes, value: str, where: str) -> list[str]:
    token = value[:17].encode()  # hush-<12 hex>: unchanged by every encoding
    found = [f"{where}: {form!r}" for form in encodings(value) if form.encode() in haystack]
    return found + ([f"{where}: the token {token!r}"] if token in haystack else [])


@pytest.mark.asyncio
@pytest.mark.browser
async def test_an_encoded_secret_is_found_nowhere(odd: OddEngine, sim: Sim, site: DemoSite) -> None:
    sim.reset()
    site.clear_access_log()
    value, placeholder = odd.value, "<secret>ODD_ITEM</secret>"
    events = await collect(odd.engine.client, f"Order the odd secret item in size large at {site.url}form.html")
    done = final(events)
    assert done.HasField("completed") and done.completed.success, str(done)
    # The page received the real value (its code is computed from what was submitted) ...
    assert done.completed.result == (f"I saw: Order confirmed: {placeholder} (large), confirmation "
                                     f"{order_code(value, 'large')} | title: Order status: {placeholder}")
    # ... form-urlencoded by the browser, the form the issue found leaking.
    sent = f"/order.html?item={pct(value, FORM_SAFE, '+')}&size=large"
    assert sent in site.access_log(), site.access_log()
    assert any(f"item={placeholder}&size=large" in s.url for s in steps(events))
    requests = sim.requests()
    assert any(f"Order status: {placeholder}" in r for r in requests)  # the title reached the model, redacted

    found: list[str] = []
    everything = await watch_all(odd.engine.client, events[0].task_id)
    assert len(everything) == len(events)
    for ev in everything:
        found += leaks(ev.SerializeToString(), value, f"event {ev.seq} {ev.WhichOneof('kind')}")
    found += leaks((await odd.engine.client.get_task(events[0].task_id)).SerializeToString(), value, "GetTask")
    for i, body in enumerate(requests):
        found += leaks(body.encode(), value, f"model request {i}")
    files = odd.stored_files()
    names = {p.name for p in files}
    assert {"tasks.sqlite", "cache.sqlite", "coordinator.log", "stderr.log"} <= names, names
    assert any(n.startswith("worker-") and n.endswith(".log") for n in names), names
    for path in files:  # with the WAL files, while the engine runs (they hold the latest writes)
        found += leaks(path.read_bytes(), value, str(path.relative_to(odd.dir)))
    assert found == []
    # Positive controls: the places searched do hold this task, redacted.
    cache = b"".join(p.read_bytes() for p in files if p.name.startswith("cache.sqlite"))
    assert placeholder.encode() in cache
    tasks_db = b"".join(p.read_bytes() for p in files if p.name.startswith("tasks.sqlite"))
    assert events[0].task_id.encode() in tasks_db and placeholder.encode() in tasks_db
    worker_log = "".join(p.read_text() for p in files if p.name.startswith("worker-"))
    assert f"task {events[0].task_id} step" in worker_log and f"item={placeholder}&size=large" in worker_log


@pytest.mark.asyncio
@pytest.mark.browser
async def test_logs_dir_gets_every_process_log(odd: OddEngine) -> None:
    coordinator = (odd.logs / "coordinator.log").read_text()
    assert "coordinator listening on" in coordinator and "loaded 1 secrets from" in coordinator
    workers = sorted(odd.logs.glob("worker-*.log"))
    assert len(workers) == 1 and "ready on" in workers[0].read_text()
    assert "gateway listening on" in (odd.logs / "gateway.log").read_text()
