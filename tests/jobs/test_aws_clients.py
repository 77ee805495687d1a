"""jobs/aws.py: the one boto3 client factory of the jobs, the trigger Lambda and the KPI API.

Building a client makes no request, so these tests need no emulator.
"""

from __future__ import annotations

import os

import pytest

from jobs import aws
from jobs.config import PipelineConfig


def test_location_from_env_reads_region_and_endpoint_only_when_set() -> None:
    assert aws.Location.from_env({}) == aws.Location(None, None)
    assert aws.Location.from_env({"AWS_DEFAULT_REGION": "eu-west-1"}).region == "eu-west-1"
    both = {"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "eu-west-1"}
    assert aws.Location.from_env(both).region == "eu-central-1"  # what the Lambda runtime sets
    assert aws.Location.from_env({"AWS_ENDPOINT_URL": "  "}).endpoint_url is None
    assert aws.Location.from_env({"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}).endpoint_url == (
        "http://127.0.0.1:5000"
    )


def test_clients_are_cached_per_service_region_endpoint_and_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4999")
    first = aws.client("dynamodb")
    assert aws.client("dynamodb") is first
    assert first.meta.endpoint_url == "http://127.0.0.1:4999"
    assert first.meta.region_name == "us-east-1"
    # Another emulator (a test pointing the environment elsewhere): a client of its own.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4998")
    assert aws.client("dynamodb").meta.endpoint_url == "http://127.0.0.1:4998"
    assert aws.client("dynamodb", retries=aws.REQUEST_RETRIES) is not aws.client("dynamodb")
    assert aws.client("s3") is not aws.client("dynamodb")


def test_without_an_endpoint_the_client_talks_to_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    ddb = aws.client("dynamodb", retries=aws.REQUEST_RETRIES)
    assert ddb.meta.endpoint_url == "https://dynamodb.eu-west-1.amazonaws.com"


def test_a_pipeline_config_is_honoured_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4999")
    config = PipelineConfig(region="ap-south-1", endpoint_url="http://127.0.0.1:4997")
    s3 = aws.client("s3", config)
    assert (s3.meta.region_name, s3.meta.endpoint_url) == ("ap-south-1", "http://127.0.0.1:4997")
    assert aws.client("s3", config) is s3
    table = aws.resource("dynamodb", config).Table("t")
    assert table.meta.client.meta.endpoint_url == "http://127.0.0.1:4997"


def test_retry_policies() -> None:
    """Jobs retry adaptively and longer; the Lambdas fail within their timeouts (10 s / 60 s)."""
    location = aws.Location("us-east-1", "http://127.0.0.1:4999")
    job = aws.client("sqs", location).meta.config.retries
    request = aws.client("sqs", location, retries=aws.REQUEST_RETRIES).meta.config.retries
    assert (job["mode"], job["total_max_attempts"]) == ("adaptive", 9)  # 8 retries
    assert (request["mode"], request["total_max_attempts"]) == ("standard", 6)  # 5 retries


def test_a_service_specific_endpoint_wins_as_in_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local stack sends Step Functions to its own executor (AWS_ENDPOINT_URL_SFN) and the rest to
    the emulator: the trigger's StartExecution must reach the executor, not moto's inert service."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4999")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", "http://127.0.0.1:4996")
    assert aws.client("stepfunctions").meta.endpoint_url == "http://127.0.0.1:4996"
    assert aws.client("s3").meta.endpoint_url == "http://127.0.0.1:4999"
    config = PipelineConfig(region="us-east-1", endpoint_url="http://127.0.0.1:4997")
    assert aws.client("stepfunctions", config).meta.endpoint_url == "http://127.0.0.1:4996"
    assert aws.client("sqs", config).meta.endpoint_url == "http://127.0.0.1:4997"
    monkeypatch.delenv("AWS_ENDPOINT_URL_SFN")
    assert aws.client("stepfunctions").meta.endpoint_url == "http://127.0.0.1:4999"


def test_an_environment_given_explicitly_brings_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host of several environments (the local stack's trigger) passes each its own credentials;
    the process's own environment keeps boto3's chain (a Lambda's rotating role credentials)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "process-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "process-secret")
    given = {
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "given-key",
        "AWS_SECRET_ACCESS_KEY": "given-secret",
    }
    assert aws.credentials_of(given) == ("given-key", "given-secret", None)
    assert aws.credentials_of({**given, "AWS_SESSION_TOKEN": "t"}) == ("given-key", "given-secret", "t")
    assert aws.credentials_of(None) is None
    assert aws.credentials_of(os.environ) is None
    assert aws.credentials_of({"AWS_ACCESS_KEY_ID": "only-the-key"}) is None
    explicit = aws.client("sqs", env=given)._request_signer._credentials
    assert explicit.access_key == "given-key"
    from_process = aws.client("sqs", env=os.environ)._request_signer._credentials
    assert from_process.access_key == "process-key"
    assert aws.client("sqs", env=given) is not aws.client("sqs", env={**given, "AWS_ACCESS_KEY_ID": "other"})
