"""Tests of jobs/: the pipeline library (config, clients, the KPI contract, the session factory)."""
