"""Where ``emr_serverless.upload_artifacts`` (and deploy.sh) put the EMR job's files, as the URIs a job
run names: what the template's ``!Sub`` of ``EmrEntryPoint`` and ``EmrSparkSubmitParameters`` must equal."""

from __future__ import annotations

from ecomkpi.sfn_local.emr_serverless import EMR_JARS, EMR_PREFIX, ENTRY_POINT_FILE, JOBS_ZIP_FILE


def entry_point_uri(bucket: str) -> str:
    return f"s3://{bucket}/{EMR_PREFIX}/{ENTRY_POINT_FILE}"


def spark_submit_parameters(bucket: str) -> str:
    """What every job run gets as SparkSubmitParameters (the stack's ``EmrSparkSubmitParameters``)."""
    jars = ",".join(f"s3://{bucket}/{EMR_PREFIX}/jars/{name}" for name in EMR_JARS)
    return (
        f"--jars {jars} --py-files s3://{bucket}/{EMR_PREFIX}/{JOBS_ZIP_FILE} "
        "--conf spark.emr-serverless.driverEnv.PYTHONUNBUFFERED=1"
    )
