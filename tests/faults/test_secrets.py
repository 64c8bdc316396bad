"""Secrets: the model types ``<secret>NAME</secret>``, the browser gets the value, nothing shows it.

The strict engine's secrets file holds ``ORDER_ITEM=hush-<12 hex>``. Scenario
``secret-order`` types the placeholder into the demo order form and reports the
confirmation line as it saw it; if it is ever shown a ``hush-...`` value (page text,
URL, tool result) it answers ``LEAK: ...`` instead. The order page echoes the item, so
the page text and URL the model sees must be redacted too.
"""

from __future__ import annotations

import logging

import pytest

from blast_grpc.agent.secrets import RedactingFilter, SecretError, Secrets, parse_secrets
from blast_grpc.demo_site.facts import order_code
from blast_grpc.demo_site.server import DemoSite

from .conftest import StrictEngine, collect, final, steps, watch_all

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
