"""The one module that creates boto3 clients: endpoint (moto in tests), region and throttling retries.

It also says what an AWS failure means to the person who has to fix it (`explained`): missing credentials,
an unreachable endpoint, a missing resource or a denied permission become one ConfigError naming what was
being read and what to do, instead of botocore's traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lakehouse.errors import ConfigError, RetryableError

# Adaptive mode adds client-side rate limiting on top of the standard retries, so a throttled
# DynamoDB table or Secrets Manager slows the caller down instead of failing it.
RETRY_MAX_ATTEMPTS = 10

_CREDENTIALS_HELP = (
    "run it where a role provides credentials (Glue, EMR, an instance profile), or set AWS_PROFILE (after "
    "`aws sso login` for an SSO profile) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)
_NOT_FOUND = {"ResourceNotFoundException", "NoSuchKey", "NoSuchBucket", "NotFound", "404"}
_DENIED = {"AccessDeniedException", "AccessDenied", "Forbidden", "403"}
_BAD_CREDENTIALS = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
}
_TRANSIENT = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
    "InternalServiceError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "500",
    "503",
}


def region_name(region: str | None = None) -> str | None:
    """The region a client gets: `region`, else ``AWS_REGION``, else None (boto3 then reads
    ``AWS_DEFAULT_REGION`` and ``~/.aws/config``). boto3 itself does not read AWS_REGION, which the EMR
    cluster's configuration and Lambda set, so it is read here."""
    return region or os.environ.get("AWS_REGION") or None


def client(service: str, *, region: str | None = None, endpoint_url: str | None = None) -> Any:
    """A boto3 client for `service` with adaptive retries.

    The endpoint is, in order: `endpoint_url`, ``AWS_ENDPOINT_URL_<SERVICE>``, ``AWS_ENDPOINT_URL``,
    else AWS's own. The region is `region`, else ``AWS_REGION``, else boto3's own chain
    (``AWS_DEFAULT_REGION``, ``~/.aws/config``).
    """
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import NoRegionError, ProfileNotFound
    except ImportError:
        raise ImportError(
            "boto3 is not installed: the DynamoDB policy store and Secrets Manager need it. "
            "Install it with `pip install boto3` (Glue and EMR ship it)."
        ) from None

    env_name = "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")
    endpoint = endpoint_url or os.environ.get(env_name) or os.environ.get("AWS_ENDPOINT_URL") or None
    config = Config(retries={"mode": "adaptive", "max_attempts": RETRY_MAX_ATTEMPTS})
    try:
        return boto3.client(service, region_name=region_name(region), endpoint_url=endpoint, config=config)
    except NoRegionError:
        raise ConfigError(
            f"no AWS region for the {service} client: set AWS_REGION (or AWS_DEFAULT_REGION), "
            "or the region in the configuration"
        ) from None
    except ProfileNotFound as exc:
        raise ConfigError(
            f"cannot create the {service} client: {exc} (AWS_PROFILE={os.environ.get('AWS_PROFILE', '')!r}): "
            "name a profile of ~/.aws/config, or unset AWS_PROFILE"
        ) from None


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError (e.g. 'ResourceNotFoundException'), else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code else None


def _region_of(aws_client: Any) -> str:
    region = getattr(getattr(aws_client, "meta", None), "region_name", None)
    return f"region {region}" if region else "the client's region"


def problem(exc: BaseException, *, permission: str, aws_client: Any = None) -> tuple[type[Exception], str] | None:
    """What a failed AWS call means and what to do, with the error class to raise; None if it is not an
    AWS failure this module can explain (the caller re-raises it).

    `permission` names the IAM action(s) the call needs (e.g. "secretsmanager:GetSecretValue").
    """
    try:
        from botocore import exceptions as boto
    except ImportError:
        return None
    where = _region_of(aws_client)
    if isinstance(
        exc,
        boto.NoCredentialsError
        | boto.PartialCredentialsError
        | boto.CredentialRetrievalError
        | boto.TokenRetrievalError
        | boto.SSOError
        | boto.ProfileNotFound,
    ):
        return ConfigError, f"no usable AWS credentials ({exc}): {_CREDENTIALS_HELP}"
    if isinstance(exc, boto.NoRegionError):
        return ConfigError, "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)"
    if isinstance(exc, boto.ConnectionError | boto.HTTPClientError):
        return ConfigError, (
            f"AWS cannot be reached ({exc}): check the region ({where}), AWS_ENDPOINT_URL if it is set, and that "
            "this host's network (VPC endpoints, proxy) reaches the service; rerun when it does"
        )
    code = error_code(exc)
    if code is None:
        return None
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message") or "").strip()
    detail = f"{code}" + (f" ({message})" if message and message not in code else "")
    if code in _NOT_FOUND:
        return ConfigError, f"{detail}: it does not exist in {where}; check its name and the region"
    if code in _DENIED:
        return ConfigError, f"{detail}: the credentials in use may not do it; grant them {permission}"
    if code in _BAD_CREDENTIALS:
        return ConfigError, f"{detail}: the AWS credentials are not valid (expired?); {_CREDENTIALS_HELP}"
    if code == "DecryptionFailure" or code.startswith("KMS"):
        return ConfigError, f"{detail}: its KMS key cannot decrypt it; grant the credentials in use kms:Decrypt on it"
    if code in _TRANSIENT:
        return RetryableError, f"{detail}: AWS is busy or failing for now; rerun later"
    return ConfigError, f"{detail}; check it and that the credentials in use may call {permission}"


@contextmanager
def explained(
    what: str, *, permission: str, aws_client: Any = None, file: str | None = None, key: str | None = None
) -> Iterator[None]:
    """Run AWS calls; a failure `problem` explains becomes one error "cannot read <what>: <why and what to do>".

    Other exceptions pass unchanged. Used wherever a user's configuration names something in AWS (a secret,
    an S3 object) so that a missing credential or a misspelt name is a message, not a traceback. `file` and
    `key` (the configuration file and key that named it) go into a ConfigError.
    """
    try:
        yield
    except Exception as exc:
        found = problem(exc, permission=permission, aws_client=aws_client)
        if found is None:
            raise
        kind, reason = found
        message = f"cannot read {what}: {reason}"
        raise (ConfigError(message, file=file, key=key) if kind is ConfigError else kind(message)) from None
