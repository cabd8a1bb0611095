"""Where the masking key comes from: an environment variable or AWS Secrets Manager. There is no default."""

from __future__ import annotations

import json
import os
from typing import Any

from lakehouse import aws
from lakehouse.errors import ConfigError
from lakehouse.masking import MIN_KEY_BYTES, MaskingKey

_HOW = (
    f"Provide a key of at least {MIN_KEY_BYTES} bytes (e.g. `openssl rand -hex 32`) in the environment variable "
    "or the Secrets Manager secret that the configuration names."
)


def masking_key(
    *,
    env_var: str | None,
    secret_id: str | None,
    json_field: str | None = None,
    client: Any = None,
    region: str | None = None,
) -> MaskingKey:
    """Load the masking key: `env_var` if that variable is set, else the Secrets Manager `secret_id`.

    The secret's SecretString is the key itself, or, when `json_field` is given, a JSON object whose
    `json_field` holds it (a SecretBinary is used as raw bytes). Text keys are their UTF-8 bytes,
    surrounding whitespace stripped. No key → ConfigError: the non-PHI output refuses to start.
    Error messages name where the key was looked for, never its text.
    """
    if env_var:
        text = os.environ.get(env_var, "").strip()
        if text:
            return _checked(text.encode("utf-8"), f"environment variable {env_var}")
    if secret_id:
        return _checked(_from_secrets_manager(secret_id, json_field, client, region), f"secret {secret_id}")
    looked = f"environment variable {env_var} is not set" if env_var else "no environment variable is configured"
    raise ConfigError(
        f"no masking key ({looked}, no Secrets Manager secret is configured): "
        f"the non-PHI output refuses to start without one. {_HOW}"
    )


def _from_secrets_manager(secret_id: str, json_field: str | None, client: Any, region: str | None) -> bytes:
    sm = client if client is not None else aws.client("secretsmanager", region=region)
    # No credentials, a misspelt name, a denied role: one message naming the secret and what to do.
    with aws.explained(
        f"the masking key from secret {secret_id}",
        permission="secretsmanager:GetSecretValue on it",
        aws_client=sm,
        key="privacy.key_secret_id",
    ):
        response = sm.get_secret_value(SecretId=secret_id)
    if response.get("SecretBinary") is not None and response.get("SecretString") is None:
        return bytes(response["SecretBinary"])
    text: str = response.get("SecretString") or ""
    if json_field is None:
        return text.strip().encode("utf-8")
    try:
        document = json.loads(text)
    except ValueError:
        raise ConfigError(
            f"secret {secret_id} is not JSON, but the configuration reads field {json_field!r} from it"
        ) from None
    value = document.get(json_field) if isinstance(document, dict) else None
    if not isinstance(value, str):
        raise ConfigError(f"secret {secret_id} has no string field {json_field!r} holding the masking key")
    return value.strip().encode("utf-8")


def _checked(secret: bytes, where: str) -> MaskingKey:
    if len(secret) < MIN_KEY_BYTES:
        raise ConfigError(f"the masking key in {where} is {len(secret)} bytes, shorter than {MIN_KEY_BYTES}. {_HOW}")
    return MaskingKey(secret)
