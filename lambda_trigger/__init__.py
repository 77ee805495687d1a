"""The S3-event Lambda that groups raw files into daily batches and starts the workflow exactly once.

Only boto3 is needed at runtime (no pyspark, no project-internal imports outside this package), so
the directory can be zipped on its own as the Lambda deployment package. Entry point:
``lambda_trigger.handler.lambda_handler``. See ``lambda_trigger/README.md`` for the tracker design.
"""
