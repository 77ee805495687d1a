"""Tests of ecomkpi/: the local stack, the CLI, the demo and their parts."""
