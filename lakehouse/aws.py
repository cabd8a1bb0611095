"""The one module that creates boto3 clients: endpoint (moto in tests), region and throttling retries."""

from __future__ import annotations

import os
from typing import Any

from lakehouse.errors import ConfigError

# Adaptive mode adds client-side rate limiting on top of the standard retries, so a throttled
# DynamoDB table or Secrets Manager slows the caller down instead of failing it.
RETRY_MAX_ATTEMPTS = 10


def client(service: str, *, region: str | None = None, endpoint_url: str | None = None) -> Any:
    """A boto3 client for `service` with adaptive retries.

    The endpoint is, in order: `endpoint_url`, ``AWS_ENDPOINT_URL_<SERVICE>``, ``AWS_ENDPOINT_URL``,
    else AWS's own. The region is `region`, else boto3's usual chain (``AWS_REGION``,
    ``AWS_DEFAULT_REGION``, ``~/.aws/config``).
    """
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import NoRegionError
    except ImportError:
        raise ImportError(
            "boto3 is not installed: the DynamoDB policy store and Secrets Manager need it. "
            "Install it with `pip install boto3` (Glue and EMR ship it)."
        ) from None

    env_name = "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")
    endpoint = endpoint_url or os.environ.get(env_name) or os.environ.get("AWS_ENDPOINT_URL") or None
    config = Config(retries={"mode": "adaptive", "max_attempts": RETRY_MAX_ATTEMPTS})
    try:
        return boto3.client(service, region_name=region, endpoint_url=endpoint, config=config)
    except NoRegionError:
        raise ConfigError(
            f"no AWS region for the {service} client: set AWS_REGION (or AWS_DEFAULT_REGION), "
            "or the region in the configuration"
        ) from None


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError (e.g. 'ResourceNotFoundException'), else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code else None
