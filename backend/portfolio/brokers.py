from backend.config.schema import EnvironmentConfig, LiveEnvironment
from backend.errors import ConfigError
from backend.interfaces import IBroker
from backend.portfolio.ledger import Ledger
from backend.portfolio.simulated_broker import SimulatedBroker


def build_broker(environment: EnvironmentConfig, environment_file: str, ledger: Ledger) -> IBroker:
    """Simulated fills unless the environment is live AND explicitly allows live orders."""
    if isinstance(environment, LiveEnvironment) and environment.mode == "live":
        raise ConfigError(environment_file, "live order routing is not available yet", "mode")
    return SimulatedBroker(ledger, environment.fee_rate, environment.slippage_bps)
