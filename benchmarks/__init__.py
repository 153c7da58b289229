"""Benchmark harness for fulmen (see benchmarks/README.md)."""
