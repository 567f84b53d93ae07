"""Benchmarks: each script measures side by side in one run and writes its section of
docs/benchmarks.md (`make bench` runs them all)."""
