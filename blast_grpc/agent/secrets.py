"""Secrets the agent can type without ever seeing them (BLAST's ``settings.secrets_file_path``).

The file is dotenv-style, one ``NAME=value`` a line (``export NAME=value``, quoted
values and ``#`` comments are accepted); a missing file means no secrets. The model is
told the placeholder names only, and types a secret by writing its placeholder,
``<secret>NAME</secret>``, in the ``type`` tool; ``reveal`` swaps the value in right
before ``fill()``. Everything on its way to the model, to the events or to the logs
passes ``redact``, which turns any occurrence of a value back into its placeholder::

    model ──type(text="<secret>CARD</secret>")──▶ reveal ──▶ fill("4111…")   (browser only)
    page text / URL / tool results / step events / logs ──redact──▶ "<secret>CARD</secret>"

The browser rewrites what it was given before it shows up anywhere: a GET form sends
``a+b%7E%21`` (form-urlencoded), a page script may put ``encodeURIComponent(v)`` or
``encodeURI(v)`` in its title or URL, HTML source holds ``&lt;``/``&#60;``/``&#x3c;``, JSON
holds ``\\u003c`` and ``\\"``. Enumerating whole encoded strings cannot keep up (each encoder
leaves a different set of characters alone, and URLs mix them), so the pattern is built
per character instead: every character of a value matches itself or any way of writing
it (``%XX`` in either case, also as ``%25XX``; ``+`` for a space; named, decimal and hex
HTML entities; JSON, JavaScript and Python escapes). One regex thus finds the value in any
mixture of these forms; values are tried longest first, so a value inside another stays
whole.
"""

from __future__ import annotations

import html.entities
import logging
import re
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the gateway and the coordinator redact logs without importing Playwright
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


def _hex(byte: int, width: int = 2) -> str:
    """``byte`` in hex, each letter digit matching either case (``7E`` -> ``7[Ee]``)."""
    return "".join(f"[{d}{d.lower()}]" if d.isalpha() else d for d in f"{byte:0{width}X}")


@cache
def _entity_names() -> dict[str, list[str]]:
    """Character -> its HTML named references (``<`` -> ``lt;``, ``LT;``, ``lt``, ``LT``)."""
    names: dict[str, list[str]] = {}
    for name, char in html.entities.html5.items():
        names.setdefault(char, []).append(name)
    return names


def char_pattern(c: str) -> str:
    """A regex matching character ``c`` written in any form a browser, a page or a serializer uses."""
    utf8 = c.encode("utf-8")
    forms = [re.escape(c)]
    forms.append("".join(f"%(?:25)?{_hex(b)}" for b in utf8))  # percent-encoded, maybe twice
    if c == " ":
        forms.append(r"\+")  # application/x-www-form-urlencoded
    code = ord(c)
    forms.append(f"&#0*{code};")
    forms.append(f"&#[xX]0*{_hex(code, 1)};")
    forms += [f"&{re.escape(n)}" for n in _entity_names().get(c, [])]
    if code <= 0xFFFF:
        forms.append(rf"\\u{_hex(code, 4)}")  # JSON / JavaScript
    else:  # a UTF-16 surrogate pair in JSON
        hi, lo = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        forms.append(rf"\\u{_hex(hi, 4)}\\u{_hex(lo, 4)}")
    if code < 0x80:
        forms.append(rf"\\x{_hex(code)}")  # JavaScript / Python
    else:
        forms.append("".join(rf"\\{b:03o}" for b in utf8))  # protobuf text format, C
    shorts = {'"': '"', "\\": "\\", "/": "/", "'": "'", "\n": "n", "\t": "t", "\r": "r", "\b": "b", "\f": "f"}
    if c in shorts:
        forms.append(re.escape("\\" + shorts[c]))
    return "(?:" + "|".join(forms) + ")"


def value_pattern(value: str) -> str:
    """A regex matching ``value`` with each character in any of its forms (see the module docs)."""
    return "".join(char_pattern(c) for c in value)


class Secrets:
    """Name -> value, with the placeholder substitution and redaction built on it."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self._values = dict(values or {})
        # Longest first: a value inside another stays whole. Group i stands for _order[i].
        self._order = sorted(self._values, key=lambda n: len(self._values[n]), reverse=True)
        alternatives = [f"(?P<s{i}>{value_pattern(self._values[n])})" for i, n in enumerate(self._order)]
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None

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
        """Every occurrence of a secret value, in any of its encoded forms, -> its placeholder."""
        if self._pattern is None or not text:
            return text

        def name(m: re.Match[str]) -> str:
            assert m.lastgroup is not None
            return placeholder(self._order[int(m.lastgroup[1:])])

        return self._pattern.sub(name, text)

    def redact_observation(self, obs: Observation) -> Observation:
        if self._pattern is None:
            return obs
        return replace(obs, url=self.redact(obs.url), title=self.redact(obs.title),
                       elements=[self.redact(e) for e in obs.elements], text=self.redact(obs.text),
                       notes=[self.redact(n) for n in obs.notes])


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
