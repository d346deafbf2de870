"""Benchmarks behind ``spl bench`` (each writes JSON/CSV under benchmarks/results/)."""
