"""Benchmarks: side-by-side speed measurements written to benchmarks/results/ (not timed tests)."""
