"""Small text helpers for what srvd prints and logs."""

from __future__ import annotations


def plural(count: int, word: str) -> str:
    """``1 domain``, ``2 domains``, ``0 zones``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def figures(domains: int, zones: int) -> str:
    """``1 domain, 2 zones``."""
    return f"{plural(domains, 'domain')}, {plural(zones, 'zone')}"
