"""Tests of stepfunctions/: the workflow definition, run on the local executor."""
