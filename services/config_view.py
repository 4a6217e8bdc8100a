"""`run-operation PATH --print-config`: the operation as its files resolve, for people to read.

Invariant: built from the loaded files alone, no environment variable is read, so no credential
value can appear; a value under a key named like a credential (as in the logs) is masked unless
the key ends in `_env` (those hold the names of environment variables, not values), and a URL
loses any `user:password@` part.
"""

import json
from typing import Any

import yaml

from backend.config import LoadedOperation
from backend.redaction import MASK, without_url_credentials
from services.logging_setup import SECRET_KEY


def resolved_config(operation: LoadedOperation) -> dict[str, Any]:
    """The operation file, then per active link its blueprint and environment (with their files)."""
    return _masked({
        "operation": {"file": str(operation.path), **operation.config.model_dump(mode="json")},
        "strategy_links": [
            {
                "strategy_link": link.link_id,
                "blueprint": {"id": link.link.strategy_blueprint_id, "file": str(link.blueprint_file),
                              **link.blueprint.model_dump(mode="json")},
                "environment": {"id": link.link.execution_environment_id, "file": str(link.environment_file),
                                **link.environment.model_dump(mode="json")},
            }
            for link in operation.links
        ],
    })


def render(config: dict[str, Any], output_format: str) -> str:
    if output_format == "json":
        return json.dumps(config, indent=2)
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True).rstrip("\n")


def _masked(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {name: _masked(item, str(name)) for name, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, key) for item in value]
    if SECRET_KEY.search(key) and not key.endswith("_env") and value is not None:
        return MASK
    if isinstance(value, str):
        return without_url_credentials(value)
    return value
