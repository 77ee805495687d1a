"""Tests of ecomkpi/sfn_local/: the local Step Functions executor."""
