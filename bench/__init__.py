"""Benchmark scripts (make bench)."""
