"""The keys of a live environment file on this exchange, beyond those every exchange has.

Invariant: pydantic and the config schema only (the loader imports this for every environment on
the exchange, validation included); names of environment variables, never credentials.
"""

from pydantic import Field

from backend.config.schema import EnvironmentVariableName, LiveEnvironment


class TemplateSettings(LiveEnvironment):
    api_key_env: EnvironmentVariableName = "TEMPLATE_API_KEY"  # the variable holding the key
    api_secret_env: EnvironmentVariableName = "TEMPLATE_API_SECRET"
    api_url: str | None = None  # base URL override: a local fake exchange in tests
    # How long a placed order's fill is awaited before it is journaled as unknown (then looked up).
    order_wait_seconds: float = Field(default=3, gt=0)
