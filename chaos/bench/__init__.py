"""Benchmarks that print a table and write JSON (``pfxha bench ...``).

``chaos.bench._stats`` holds the percentile helpers every benchmark reuses.
"""
