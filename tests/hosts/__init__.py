"""Tests of hosts/: the warm worker, its warm-up and the class archive."""
