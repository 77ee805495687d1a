"""Tests of jobs/validation/: the validation job and its rules."""
