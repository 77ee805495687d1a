"""The S3-event Lambda that groups raw files into daily batches and starts the workflow exactly once.

Only boto3 is needed at runtime (no pyspark; outside this package only the client factory
``jobs/aws.py``, which imports nothing but boto3), so the deployment package is this directory plus
that file (scripts/deploy.sh; a test imports the handler from the zip alone). Entry point:
``lambda_trigger.handler.lambda_handler``. See ``lambda_trigger/README.md`` for the tracker design.
"""
