"""Spark jobs of the ecomkpi pipeline and the pure DataFrame logic they share.

Everything under ``jobs`` that is not an adapter (S3, DynamoDB, Delta, SNS) is a function of
DataFrames, so notebooks, tests and both container tasks reuse exactly the same KPI contract.
"""
