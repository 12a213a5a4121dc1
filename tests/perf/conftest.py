"""tests/perf holds benchmarks run by hand (see README.md), never collected by pytest."""

collect_ignore_glob = ["*.py"]
