"""The answers hidden in the demo site, for tests and demos to check against.

The HTML pages are static files; ``tests/unit/test_demo_site.py`` checks that
these facts and the pages agree, so editing one without the other fails loudly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gorilla:
    """The largest gorilla of one continent, as stated on that continent's page."""

    continent: str
    name: str
    kg: int
    page: str

    @property
    def sentence(self) -> str:
        """The exact sentence on the page."""
        return f"The largest gorilla in {self.continent} is {self.name}, weighing {self.kg} kg."


GORILLAS: dict[str, Gorilla] = {
    g.continent: g
    for g in [
        Gorilla("Africa", "Mbeleko", 231, "africa.html"),
        Gorilla("Asia", "Tamarind", 204, "asia.html"),
        Gorilla("Europe", "Quillfeather", 187, "europe.html"),
        Gorilla("North America", "Brambleton", 242, "north-america.html"),
        Gorilla("South America", "Zephyrino", 219, "south-america.html"),
        Gorilla("Oceania", "Kowhaiwai", 176, "oceania.html"),
    ]
}

# Stated once, in the last section of article.html (see make_article.py).
ARTICLE_CODE = "HERON-7352"

ORDER_SIZES = ("small", "medium", "large")


def order_code(item: str, size: str) -> str:
    """The confirmation code order.html shows for ``item`` and ``size``.

    Mirrors the page's JavaScript exactly: 32-bit FNV-1a over the UTF-16 code
    units of ``item + "|" + size``, as 8 uppercase hex digits. UTF-16 because
    that is what JS ``charCodeAt`` walks; for ASCII it is just the characters.
    """
    text = f"{item}|{size}"
    units = text.encode("utf-16-le")
    h = 0x811C9DC5
    for i in range(0, len(units), 2):
        h ^= units[i] | (units[i + 1] << 8)
        h = (h * 0x01000193) & 0xFFFFFFFF
    return f"{h:08X}"
