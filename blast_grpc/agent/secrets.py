"""Secrets the agent can type without ever seeing them (BLAST's ``settings.secrets_file_path``).

The file is dotenv-style, one ``NAME=value`` a line (``export NAME=value``, quoted
values and ``#`` comments are accepted); a missing file means no secrets. The model is
told the placeholder names only, and types a secret by writing its placeholder,
``<secret>NAME</secret>``, in the ``type`` tool; ``reveal`` swaps the value in right
before ``fill()``. Everything on its way to the model, to the events or to the logs
passes ``redact``, which turns any occurrence of a value (raw, URL-encoded or
JSON-escaped) back into its placeholder::

    model ──type(text="<secret>CARD</secret>")──▶ reveal ──▶ fill("4111…")   (browser only)
    page text / URL / tool results / step events / logs ──redact──▶ "<secret>CARD</secret>"
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote, quote_plus

from .observe import Observation

log = logging.getLogger("blast_grpc.secrets")

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_LINE = re.compile(rf"^\s*(?:export\s+)?({_NAME})\s*=\s*(.*?)\s*$")
PLACEHOLDER = re.compile(rf"<secret>\s*({_NAME})\s*</secret>")


class SecretError(ValueError):
    """A placeholder names no known secret; the message lists the names (never a value)."""


def placeholder(name: str) -> str:
    return f"<secret>{name}</secret>"


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    if " #" in raw:  # an unquoted value may end in a comment
        raw = raw.split(" #", 1)[0].rstrip()
    return raw


def parse_secrets(text: str, source: str = "secrets file") -> dict[str, str]:
    """``NAME=value`` lines -> {NAME: value}; bad lines are skipped with a warning naming the line only."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            log.warning("%s line %d is not NAME=value; skipped", source, number)
            continue
        value = _unquote(m.group(2))
        if value:
            out[m.group(1)] = value
    return out


class Secrets:
    """Name -> value, with the placeholder substitution and redaction built on it."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self._values = dict(values or {})
        forms: dict[str, str] = {}
        for name, value in self._values.items():
            for form in (value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]):
                forms.setdefault(form, name)
        ordered = sorted(forms, key=len, reverse=True)  # longest first: a value inside another stays whole
        self._forms = forms
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @classmethod
    def load(cls, path: str | Path) -> Secrets:
        """Read the file at ``path`` (relative to the working directory); missing means no secrets."""
        p = Path(path)
        if not p.is_file():
            log.debug("no secrets file at %s: the agent has no secrets", p)
            return cls()
        secrets = cls(parse_secrets(p.read_text(encoding="utf-8"), str(p)))
        log.info("loaded %d secrets from %s: %s", len(secrets.names), p, ", ".join(secrets.names) or "none")
        return secrets

    @property
    def names(self) -> list[str]:
        return sorted(self._values)

    def __bool__(self) -> bool:
        return bool(self._values)

    def prompt(self) -> str:
        """The system prompt's paragraph about secrets (empty when there are none)."""
        if not self._values:
            return ""
        listed = ", ".join(placeholder(n) for n in self.names)
        return ("SECRETS: to type a secret, write its placeholder exactly, e.g. "
                f"type(text=\"{placeholder(self.names[0])}\"); the browser gets the value. You never see "
                f"secret values: pages show the placeholder instead. Available: {listed}.")

    def reveal(self, text: str) -> str:
        """Replace every placeholder with its value; ``SecretError`` for an unknown name."""

        def value(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in self._values:
                known = ", ".join(self.names) or "none"
                raise SecretError(f"there is no secret named {name} (available: {known})")
            return self._values[name]

        return PLACEHOLDER.sub(value, text)

    def redact(self, text: str) -> str:
        """Every occurrence of a secret value (raw, URL-encoded, JSON-escaped) -> its placeholder."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(lambda m: placeholder(self._forms[m.group(0)]), text)

    def redact_observation(self, obs: Observation) -> Observation:
        if self._pattern is None:
            return obs
        return replace(obs, url=self.redact(obs.url), title=self.redact(obs.title),
                       page=[self.redact(line) for line in obs.page], notes=[self.redact(n) for n in obs.notes],
                       tabs=[self.redact(t) for t in obs.tabs])


class RedactingFilter(logging.Filter):
    """A handler filter that redacts secret values from every log record (message, exception, stack)."""

    def __init__(self, secrets: Secrets) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._secrets.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._secrets.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._secrets.redact(record.stack_info)
        return True


def install_log_redaction(secrets: Secrets) -> None:
    """Redact secret values from everything the root logger's handlers write."""
    if not secrets:
        return
    flt = RedactingFilter(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(flt)
