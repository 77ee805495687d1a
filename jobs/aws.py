"""The one place boto3 clients and resources are built: the jobs, the trigger Lambda, the KPI API.

Where a client talks to is a ``region`` and an optional ``endpoint_url``: a
:class:`~jobs.config.PipelineConfig` (the jobs, tools, notebooks), or, when none is given, the
environment read at call time (:meth:`Location.from_env`): ``AWS_REGION`` / ``AWS_DEFAULT_REGION``
(neither set: boto3's own lookup, e.g. the profile's region), and ``AWS_ENDPOINT_URL`` only when it
is set (unset: AWS's own endpoints). Both are passed explicitly, so a config built in a test or a
notebook is honoured too.

Clients are cached per process and per (service, region, endpoint, retry policy): building one
costs tens of milliseconds, a Lambda container serves many invocations, and clients are
thread-safe (two threads asking at once may both build one; the cache keeps one). A test that points the environment at another emulator gets fresh clients, since the
endpoint is part of the key.

Both Lambda zips ship this file (with the docstring-only ``jobs/__init__.py``; scripts/deploy.sh),
so at run time it imports only the standard library, boto3 and botocore: the typed clients
(types-boto3) and ``PipelineConfig`` are for the type checker only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from types_boto3_cloudwatch import CloudWatchClient
    from types_boto3_dynamodb import DynamoDBClient, DynamoDBServiceResource
    from types_boto3_ecs import ECSClient
    from types_boto3_events import EventBridgeClient
    from types_boto3_logs import CloudWatchLogsClient
    from types_boto3_s3 import S3Client, S3ServiceResource
    from types_boto3_s3.type_defs import CopySourceTypeDef
    from types_boto3_sns import SNSClient
    from types_boto3_sqs import SQSClient
    from types_boto3_stepfunctions import SFNClient

# The services the project talks to: the factory is typed for exactly these.
ServiceName = Literal["s3", "dynamodb", "sqs", "sns", "stepfunctions", "logs", "cloudwatch", "ecs", "events"]
ResourceName = Literal["s3", "dynamodb"]

# Jobs and tools run for minutes and write in bulk: adaptive retries (client-side rate limiting once
# throttled) with more attempts. max_pool_connections matters only to threaded callers.
JOB_RETRIES = BotoConfig(retries={"max_attempts": 8, "mode": "adaptive"}, max_pool_connections=64)
# A Lambda answers within its timeout (KPI API 10 s, trigger 60 s): standard retries (throttling
# and 5xx), fewer attempts, so a failing call fails inside the timeout and the event is redelivered.
REQUEST_RETRIES = BotoConfig(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=64)


class Target(Protocol):
    """Where clients talk to; :class:`~jobs.config.PipelineConfig` is one."""

    @property
    def region(self) -> str | None: ...

    @property
    def endpoint_url(self) -> str | None: ...


@dataclass(frozen=True)
class Location:
    """A :class:`Target` of its own: the Lambdas' (from the environment) or an emulator's."""

    region: str | None = None
    endpoint_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Location:
        """The region Lambda runs in (``AWS_REGION``, set by the runtime; elsewhere None lets boto3
        look it up) and the emulator's endpoint when ``AWS_ENDPOINT_URL`` is set (locally and in
        tests; never in AWS)."""
        env = os.environ if env is None else env
        return cls(
            region=(env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip() or None,
            endpoint_url=(env.get("AWS_ENDPOINT_URL") or "").strip() or None,
        )


# boto3's service-specific endpoint variables (``AWS_ENDPOINT_URL_<service id>``), which take
# precedence over ``AWS_ENDPOINT_URL``: the local stack points Step Functions at its own executor
# (``AWS_ENDPOINT_URL_SFN``) while everything else goes to the emulator. Passing the general endpoint
# explicitly would override boto3's own lookup, so the factory applies the same rule itself.
SERVICE_ENDPOINT_VARS: dict[str, str] = {
    "s3": "AWS_ENDPOINT_URL_S3",
    "dynamodb": "AWS_ENDPOINT_URL_DYNAMODB",
    "sqs": "AWS_ENDPOINT_URL_SQS",
    "sns": "AWS_ENDPOINT_URL_SNS",
    "stepfunctions": "AWS_ENDPOINT_URL_SFN",
    "logs": "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
    "cloudwatch": "AWS_ENDPOINT_URL_CLOUDWATCH",
    "ecs": "AWS_ENDPOINT_URL_ECS",
    "events": "AWS_ENDPOINT_URL_EVENTBRIDGE",
}


def endpoint_for(service: str, where: Target, env: Mapping[str, str] | None = None) -> str | None:
    """The endpoint a client of ``service`` uses: its own variable when set, else ``where``'s."""
    env = os.environ if env is None else env
    specific = (env.get(SERVICE_ENDPOINT_VARS.get(service, "")) or "").strip()
    return specific or where.endpoint_url


# The credentials of an environment given explicitly (access key, secret, session token).
Credentials = tuple[str, str, str | None]


def credentials_of(env: Mapping[str, str] | None) -> Credentials | None:
    """The static credentials an environment *given to* a client hold (as a process's own would:
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``), so that a host of several
    environments (the local stack: the trigger, an in-process worker) need not write them into its
    own. None, and boto3's own chain, for the process's environment or one without them."""
    if env is None or env is os.environ:
        return None
    key, secret = (
        (env.get("AWS_ACCESS_KEY_ID") or "").strip(),
        (env.get("AWS_SECRET_ACCESS_KEY") or "").strip(),
    )
    if not key or not secret:
        return None
    return key, secret, (env.get("AWS_SESSION_TOKEN") or "").strip() or None


@lru_cache(maxsize=64)
def _client(
    service: ServiceName,
    region: str | None,
    endpoint_url: str | None,
    retries: BotoConfig,
    credentials: Credentials | None = None,
) -> BaseClient:
    key, secret, token = credentials or (None, None, None)
    session = boto3.session.Session(
        aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token
    )
    return session.client(service, region_name=region, endpoint_url=endpoint_url, config=retries)


@lru_cache(maxsize=8)
def _resource(
    service: ResourceName, region: str | None, endpoint_url: str | None, retries: BotoConfig
) -> S3ServiceResource | DynamoDBServiceResource:
    return boto3.session.Session().resource(
        service, region_name=region, endpoint_url=endpoint_url, config=retries
    )


@overload
def client(
    service: Literal["s3"],
    config: Target | None = ...,
    *,
    retries: BotoConfig = ...,
    env: Mapping[str, str] | None = ...,
) -> S3Client: ...
@overload
def client(
    service: Literal["dynamodb"],
    config: Target | None = ...,
    *,
    retries: BotoConfig = ...,
    env: Mapping[str, str] | None = ...,
) -> DynamoDBClient: ...
@overload
def client(
    service: Literal["sqs"],
    config: Target | None = ...,
    *,
    retries: BotoConfig = ...,
    env: Mapping[str, str] | None = ...,
) -> SQSClient: ...
@overload
def client(
    service: Literal["sns"],
    config: Target | None = ...,
    *,
    retries: BotoConfig = ...,
    env: Mapping[str, str] | None = ...,
) -> SNSClient: ...
@overload
def client(
    service: Literal["stepfunctions"],
    config: Target | None = ...,
    *,
    retries: BotoConfig = ...,
    env: Mapping[str, str] | None = ...,
) -> SFNClient: ...
@overload
def client(
    service: Literal["logs"],
    config: Target | None = ...,
    *,
    retries: BotoConfig = ...,
    env: Mapping[str, str] | None = ...,
) -> CloudWatchLogsClient: ...
@overload
def client(
    service: Literal["cloudwatch"],
    config: Target | None = ...,
    *,
    retries: BotoConfig = ...,
    env: Mapping[str, str] | None = ...,
) -> CloudWatchClient: ...
@overload
def client(
    service: Literal["ecs"],
    config: Target | None = ...,
    *,
    retries: BotoConfig = ...,
    env: Mapping[str, str] | None = ...,
) -> ECSClient: ...
@overload
def client(
    service: Literal["events"],
    config: Target | None = ...,
    *,
    retries: BotoConfig = ...,
    env: Mapping[str, str] | None = ...,
) -> EventBridgeClient: ...
def client(
    service: ServiceName,
    config: Target | None = None,
    *,
    retries: BotoConfig = JOB_RETRIES,
    env: Mapping[str, str] | None = None,
) -> BaseClient:
    """The cached client of ``service`` for ``config`` (default: ``env``, else the process's
    environment, read now); ``env`` also holds the service-specific endpoint variables and, when
    given, the credentials (:func:`credentials_of`)."""
    where = Location.from_env(env) if config is None else config
    return _client(service, where.region, endpoint_for(service, where, env), retries, credentials_of(env))


@overload
def resource(
    service: Literal["s3"], config: Target | None = ..., *, retries: BotoConfig = ...
) -> S3ServiceResource: ...
@overload
def resource(
    service: Literal["dynamodb"], config: Target | None = ..., *, retries: BotoConfig = ...
) -> DynamoDBServiceResource: ...
def resource(
    service: ResourceName, config: Target | None = None, *, retries: BotoConfig = JOB_RETRIES
) -> S3ServiceResource | DynamoDBServiceResource:
    """The cached boto3 resource of ``service`` (same rules as :func:`client`)."""
    where = Location.from_env() if config is None else config
    return _resource(service, where.region, endpoint_for(service, where), retries)


# S3 refuses a CopyObject whose source is over 5 GiB, and a single copy of a few GiB is one long
# request that a Lambda's or a task's timeout may cut. From this size on, objects are copied in parts
# (UploadPartCopy, boto3's managed copy); 256 MiB parts keep a 5 GiB object at 20 requests. Module
# constants read at call time, so a test can lower them to a few MiB against the emulator.
MULTIPART_COPY_THRESHOLD = 512 * 1024 * 1024
MULTIPART_COPY_PART_SIZE = 256 * 1024 * 1024
# What a single CopyObject keeps of the source (MetadataDirective COPY); a multipart copy is a new
# upload, which gets what CreateMultipartUpload is given.
_KEPT_HEADERS = ("ContentType", "ContentEncoding", "ContentDisposition", "ContentLanguage", "CacheControl")


def copy_object(
    s3: S3Client,
    bucket: str,
    source: str,
    destination: str,
    *,
    if_match: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Server-side copy of any size, the one every move of the pipeline uses (jobs and trigger).

    ``if_match`` (an ETag, quoted or not): copy only that version of ``source``, else S3 answers
    412. ``metadata``: replace the copy's user metadata; without it the source's is kept, as a
    single CopyObject keeps it. Errors are S3's own ``ClientError``: a missing source is a 404
    (``NoSuchKey`` or ``404``), a changed one a 412, so callers tell them apart as before.
    """
    if if_match:
        head = s3.head_object(Bucket=bucket, Key=source, IfMatch=_quoted(if_match))
    else:
        head = s3.head_object(Bucket=bucket, Key=source)
    copy_source: CopySourceTypeDef = {"Bucket": bucket, "Key": source}
    extra: dict[str, Any] = {"CopySourceIfMatch": _quoted(if_match)} if if_match else {}
    if int(head.get("ContentLength", 0)) < MULTIPART_COPY_THRESHOLD:
        if metadata is not None:
            extra.update({"Metadata": dict(metadata), "MetadataDirective": "REPLACE"})
        s3.copy_object(Bucket=bucket, Key=destination, CopySource=copy_source, **extra)
        return
    # The parts are copied from the version the HEAD saw, even without if_match (boto3 conditions
    # each part on that ETag): a re-upload during the copy fails it instead of mixing two versions.
    # What to keep is said explicitly (REPLACE with the source's own values): s3transfer before 0.19
    # (the Lambda runtime's boto3 may be older than the pinned one) drops it in a multipart copy.
    extra["Metadata"] = dict(head.get("Metadata", {}) if metadata is None else metadata)
    extra["MetadataDirective"] = "REPLACE"
    extra.update({name: head[name] for name in _KEPT_HEADERS if head.get(name)})  # type: ignore[literal-required]
    transfer = TransferConfig(
        multipart_threshold=MULTIPART_COPY_THRESHOLD, multipart_chunksize=MULTIPART_COPY_PART_SIZE
    )
    s3.copy(copy_source, bucket, destination, ExtraArgs=extra, Config=transfer)


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def sns_attributes(**values: str) -> dict[str, Any]:
    """SNS ``MessageAttributes`` of string values: what a subscription's filter policy matches
    (``kind``, ``severity``, ``day``, ...; docs/alerts.md)."""
    return {name: {"DataType": "String", "StringValue": value} for name, value in values.items()}
