"""Helpers shared by the tests (fixtures data, configs, S3 snapshots); not test modules themselves."""
