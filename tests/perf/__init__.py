"""Benchmarks run by hand; see README.md. A package only so mypy tells the two conftests apart."""
