"""A tiny static website for demos and tests: gorilla records, a long article and an order form.

``DemoSite`` serves it on loopback; ``facts`` holds the answers hidden in it.
"""

from .facts import ARTICLE_CODE, GORILLAS, ORDER_SIZES, Gorilla, order_code
from .server import PAGES_DIR, DemoSite, main

__all__ = ["ARTICLE_CODE", "GORILLAS", "ORDER_SIZES", "PAGES_DIR", "DemoSite", "Gorilla", "main", "order_code"]
