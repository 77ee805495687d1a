"""Tests of notebooks/: the analyst notebooks, run headless."""
