"""Tests of kpi_api/: the KPI read API and the live page."""
