"""Generate ``pages/article.html``: a long, deterministic article on river ecology.

The article exists to test reading past the observation cut-off: it is ~80 KB of
text, and exactly one sentence, in the last section, states the secret river
code (``facts.ARTICLE_CODE``). Nothing else in it mentions that code.

Run ``python -m blast_grpc.demo_site.make_article`` to rewrite the page, or with
``--check`` to verify the committed page is what this script produces.
"""

from __future__ import annotations

import argparse
import html
import random
import sys
from pathlib import Path

from .facts import ARTICLE_CODE

OUTPUT = Path(__file__).parent / "pages" / "article.html"
SEED = 4417
SECTIONS = 14
PARAGRAPHS_PER_SECTION = (8, 11)
SENTENCES_PER_PARAGRAPH = (6, 9)

TOPICS = [
    "Headwaters and Springs", "Riffles and Pools", "The Hyporheic Zone", "Leaf Litter and Shredders",
    "Floodplain Forests", "Sediment on the Move", "Oxygen Through the Seasons", "Fish Migration",
    "Invertebrate Drift", "Beavers as Engineers", "Estuaries and Salt Wedges", "Algae and Light",
    "Groundwater Exchange", "Restoring Meanders",
]
SUBJECTS = [
    "mayfly nymphs", "caddisfly larvae", "freshwater mussels", "brown trout", "river otters", "dippers",
    "stoneflies", "alder roots", "diatom films", "willow thickets", "grey herons", "lamprey larvae",
    "water voles", "sculpins", "kingfishers", "crayfish", "sedge beds", "riparian shrubs",
]
VERBS = [
    "depend on", "shape", "respond quickly to", "slowly alter", "thrive in", "avoid", "feed on",
    "recolonise", "stabilise", "are sensitive to", "take shelter in", "compete for",
]
OBJECTS = [
    "cold, well-oxygenated riffles", "the gravel beds of the main channel", "slow backwaters",
    "fine sediment after floods", "shaded pools under the bank", "the nutrient pulse of autumn",
    "submerged wood", "the margins of the floodplain", "seasonal changes in discharge",
    "the boundary between surface water and groundwater", "drifting organic matter",
    "the warm shallows in late summer",
]
CLAUSES = [
    "especially after a wet winter", "according to long-term monitoring", "in most lowland rivers",
    "when the water temperature rises", "during the spring spate", "in the upper catchment",
    "where the channel braids", "once the canopy closes", "in years with low summer flow",
    "along undisturbed reaches", "below small weirs", "near the tidal limit",
]
OBSERVATIONS = [
    "Field surveys repeated over a decade show the same pattern.",
    "Researchers measured this with drift nets set at dusk.",
    "The effect is strongest in narrow, shaded streams.",
    "Restoration projects now use this to choose where to add woody debris.",
    "Anglers have noticed the change long before scientists described it.",
    "The numbers fall sharply when the banks are trampled by cattle.",
    "Sampling at night reveals far more activity than daytime counts suggest.",
    "The same relationship appears in rivers on three continents.",
    "Models that ignore it overestimate how fast the river recovers.",
    "Volunteers record these changes every month with simple kick samples.",
]


def _sentence(rng: random.Random) -> str:
    if rng.random() < 0.25:
        return rng.choice(OBSERVATIONS)
    subject = rng.choice(SUBJECTS)
    text = f"{subject} {rng.choice(VERBS)} {rng.choice(OBJECTS)}, {rng.choice(CLAUSES)}."
    return text[0].upper() + text[1:]


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(*SENTENCES_PER_PARAGRAPH)))


def render_article() -> str:
    """The full HTML of article.html; the same on every run."""
    rng = random.Random(SEED)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<title>River Ecology: A Long Read</title>",
        "</head>",
        "<body>",
        "<h1>River Ecology: A Long Read</h1>",
        "<p>A slow walk from the headwaters to the sea, and the living things that make a river work.</p>",
    ]
    for topic in TOPICS[:SECTIONS]:
        parts.append(f"<h2>{html.escape(topic)}</h2>")
        for _ in range(rng.randint(*PARAGRAPHS_PER_SECTION)):
            parts.append(f"<p>{html.escape(_paragraph(rng))}</p>")
    # The one fact the article exists to hide: last section, near the very end.
    parts += [
        "<h2>Closing Notes</h2>",
        f"<p>{html.escape(_paragraph(rng))}</p>",
        f"<p>Thank you for reading to the end. The secret river code is {ARTICLE_CODE}.</p>",
        '<p><a href="index.html">Back to index</a></p>',
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Write the article, or with ``--check`` exit 1 if the committed copy is stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    args = parser.parse_args(argv)
    text = render_article()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date; run python -m blast_grpc.demo_site.make_article", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
