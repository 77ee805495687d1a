"""The transformation job: validated files → Delta silver/gold (incremental per date) → DynamoDB.

``python -m jobs.transformation`` or ``spark-submit jobs/transformation/__main__.py``; in process:
``from jobs.transformation.job import run``. See README.md in this directory.
"""
