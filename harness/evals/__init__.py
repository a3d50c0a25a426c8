"""Benchmark building blocks for the eval plugins: data files, loaders, refusal rules, judges."""
