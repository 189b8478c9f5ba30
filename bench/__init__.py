"""Benchmarks for cbv, run with `python -m bench NAME [args]`; figures go to docs/benchmarks.md.

They are not timed tests: they measure and report, and only their smoke tests run in CI.
"""
