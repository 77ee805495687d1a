"""Tests of bench/: the benchmarks' own arithmetic and baselines."""
