from backend.config.schema import EnvironmentConfig, LiveEnvironment
from backend.errors import ConfigError
from backend.interfaces import IBroker
from backend.market_data.kraken_client import make_kraken_client
from backend.portfolio.exchange_broker import ExchangeBroker
from backend.portfolio.ledger import Ledger
from backend.portfolio.simulated_broker import SimulatedBroker


def build_broker(environment: EnvironmentConfig, environment_file: str, ledger: Ledger) -> IBroker:
    """Simulated fills unless the environment is live AND explicitly allows live orders."""
    if isinstance(environment, LiveEnvironment) and environment.mode == "live":
        if not environment.allow_live_orders:  # the schema refuses this already; real money: check again
            raise ConfigError(
                environment_file, "mode: live places real orders and needs allow_live_orders: true", "mode"
            )
        client = make_kraken_client(environment, environment_file, with_credentials=True)
        return ExchangeBroker(ledger, client)
    return SimulatedBroker(ledger, environment.fee_rate, environment.slippage_bps)
