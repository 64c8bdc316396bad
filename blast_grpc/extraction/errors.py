"""The one error an extraction raises (also raised inside reader processes, so it must pickle)."""

from __future__ import annotations


class ExtractionError(RuntimeError):
    """An extraction failed; the message says what failed (model down, a reader process died, ...)."""
