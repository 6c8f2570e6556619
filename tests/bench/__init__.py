"""Benchmarks, run with `make bench`; figures go to tests/bench/results.json."""
