"""Tests of jobs/transformation/: the transformation job, its plan, its lake and its serving."""
