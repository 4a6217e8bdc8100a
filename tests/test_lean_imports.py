"""Pay only for what is used (issue 19): the CLI and the live path import none of the research,
report or Parquet stack, nor rich or ccxt.pro, and neither does a backtest of a CSV file; each in
a fresh interpreter (`python -c`), so nothing another test imported counts. Of ccxt, the Kraken
clients load Kraken's modules alone, not its other ~100 exchanges'.

numpy stays: the live path's own computations are numpy (the workers' indicators and columnar
contract, the account's ledger, the candle DTOs)."""

import json
import subprocess
import sys

import pytest
import yaml

from backend.venues.kraken.lazy_ccxt import without_exchange_imports
from tests.helpers import REPO, write_config_tree

pytestmark = pytest.mark.e2e

DEMO = "config/operations/backtest_demo.yaml"
# The research stack (optuna, ray), the report's charts (matplotlib), the Parquet stack (pyarrow,
# and pandas, which pyarrow imports for many conversions), the progress bars (rich), and ccxt.pro
# (the websocket clients: imported when a websocket connects, not with the modules).
HEAVY = ("pyarrow", "pandas", "matplotlib", "optuna", "ray", "rich", "ccxt.pro")
LIVE_PATH = (
    "services.cli",
    "services.operation_service",  # builds and runs the links
    "services.environment_feed",
    "services.status_server",
    "backend.venues.kraken.factory",  # the Kraken venue adapter: client, gateway, executions channel
    "backend.venues.kraken.client",
    "backend.venues.kraken.execution",
    "backend.venues.kraken.executions",
    "backend.venues.kraken.market_data",  # the live candle feed, REST
    "backend.venues.kraken.streaming",  # the live candle feed, websocket
    "backend.state.journal",
    "backend.state.store",
)


def heavy_modules_after(code: str) -> list[str]:
    """The HEAVY modules in sys.modules after code ran in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    outcome = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=45,
                             env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    return json.loads(outcome.stdout.splitlines()[-1])


def test_the_cli_and_the_live_path_import_no_heavy_module():
    assert heavy_modules_after("\n".join(f"import {module}" for module in LIVE_PATH)) == []


# The websocket clients built (candles, executions channel), then the REST client, as a daemon does.
WEBSOCKET_CLIENTS = (
    "from backend.venues.kraken.client import make_client\n"
    "from backend.venues.kraken.websocket_clients import ExecutionsClient, StreamClient\n"
    "StreamClient({})\n"
    "ExecutionsClient({}, lambda: 'token', lambda reports, snapshot: None)\n"
    "make_client(None)\n"
)


def ccxt_exchanges_after(code: str) -> tuple[list[str], str]:
    """The modules of ccxt's exchanges (sync, async, websocket) in sys.modules after code ran in a
    fresh interpreter, and what it printed before."""
    probe = (f"{code}\nimport json, sys, ccxt\n"
             "print(json.dumps(sorted(f'{package}.{exchange}' for package in ('ccxt', 'ccxt.async_support', 'ccxt.pro')"
             " for exchange in ccxt.exchanges if f'{package}.{exchange}' in sys.modules)))\n")
    outcome = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=45,
                             env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    *printed, modules = outcome.stdout.splitlines()
    return json.loads(modules), "\n".join(printed)


def test_the_kraken_clients_load_no_other_exchange_of_ccxt():
    """ccxt's package __init__ files import each of their ~100 exchanges (ccxt/ccxt#29573); the
    daemon's Kraken clients load Kraken's modules alone (backend/venues/kraken/lazy_ccxt.py)."""
    assert ccxt_exchanges_after(WEBSOCKET_CLIENTS)[0] == ["ccxt.async_support.kraken", "ccxt.kraken", "ccxt.pro.kraken"]


def test_ccxt_loaded_exchange_by_exchange_is_ccxt_as_shipped():
    """What ccxt's packages define is there; an exchange's name is its class (read first, or
    after its module was imported, as ccxt.pro.binanceus imports ccxt.pro.binance); Kraken's
    websocket client raises the very error classes translate_error knows."""
    code = WEBSOCKET_CLIENTS + (
        "import ccxt, ccxt.async_support, ccxt.pro, ccxt.pro.binanceus\n"
        "from ccxt.base import errors\n"
        "from backend.errors import OrderRejectedError\n"
        "from backend.venues.kraken.client import translate_error\n"
        "assert ccxt.__version__ == ccxt.pro.__version__ and len(ccxt.exchanges) > 100\n"
        "assert ccxt.pro.exchanges == sorted(set(ccxt.pro.exchanges)) and 'kraken' in dir(ccxt.pro)\n"
        "assert issubclass(ccxt.pro.kraken, ccxt.async_support.kraken)\n"
        "assert issubclass(ccxt.async_support.kraken, ccxt.async_support.Exchange)\n"
        "assert ccxt.binance.__module__ == 'ccxt.binance' and isinstance(ccxt.binance, type)\n"
        "assert issubclass(ccxt.pro.binanceus, ccxt.pro.binance) and ccxt.pro.binanceus().id == 'binanceus'\n"
        "assert ccxt.pro.NetworkError is ccxt.async_support.NetworkError is errors.NetworkError\n"
        "assert set(errors.__all__) <= set(ccxt.__all__) and 'Exchange' in ccxt.__all__\n"
        "client = StreamClient({})\n"
        "try:\n"
        "    client.throw_broadly_matched_exception(client.exceptions['ws']['broad'],"
        " 'EOrder:Insufficient funds (insufficient user funds)', 'refused')\n"
        "except ccxt.InsufficientFunds as error:\n"
        "    assert isinstance(translate_error(error), OrderRejectedError)\n"
        "else:\n"
        "    raise AssertionError('no error raised')\n"
    )
    assert "ccxt.pro.binance" in ccxt_exchanges_after(code)[0]


def test_a_ccxt_laid_out_otherwise_is_imported_whole_and_said_so():
    code = ("from backend.venues.kraken import lazy_ccxt\n"
            "lazy_ccxt.without_exchange_imports = lambda source, package, filename: None  # another ccxt version\n"
            + WEBSOCKET_CLIENTS)
    modules, printed = ccxt_exchanges_after(code)
    assert {"ccxt.binance", "ccxt.async_support.binance", "ccxt.pro.binance"} <= set(modules)
    assert printed.count("ccxt_imported_whole") == 3  # ccxt, ccxt.async_support, ccxt.pro


def test_only_an_init_whose_exchange_imports_are_its_exchanges_list_is_trimmed():
    assert without_exchange_imports("from p.a import a\nfrom p.b import b\nexchanges = ['a']\n", "p", "p.py") is None
    assert without_exchange_imports("from p.a import a\n", "p", "p.py") is None  # no exchanges list
    assert without_exchange_imports("exchanges = []\n", "p", "p.py") is None  # nothing to trim: ccxt lazy already?
    code = without_exchange_imports("from p.a import a\nfrom p.base import errors\nexchanges = ['a']\n", "p", "p.py")
    assert code is not None and "p.a" not in code.co_names and "p.base" in code.co_names


def test_a_csv_backtest_and_its_validation_import_no_heavy_module():
    code = ("from services.cli import main\n"
            f"assert main(['validate', {DEMO!r}]) == 0\n"
            f"assert main([{DEMO!r}, '--log-level', 'error']) == 0\n")
    assert heavy_modules_after(code) == []


def test_a_parquet_backtest_imports_pyarrow_and_no_other_heavy_module(tmp_path):
    """The control: pyarrow is still imported where a Parquet file is read."""
    import pyarrow.csv
    import pyarrow.parquet

    data_file = tmp_path / "candles.parquet"
    pyarrow.parquet.write_table(pyarrow.csv.read_csv(REPO / "data" / "kraken_xbtusd_1h_2023q1.csv"), data_file)
    environment = yaml.safe_load((REPO / "config" / "environments" / "backtest_2023_q1.yaml").read_text())
    del environment["detail_data_file"]
    blueprint = yaml.safe_load((REPO / "config" / "strategies" / "smart_dca_btc.yaml").read_text())
    operation = write_config_tree(tmp_path, [("dca", "parquet")], {"dca": blueprint},
                                  {"parquet": {**environment, "data_file": str(data_file)}})
    code = f"from services.cli import main\nassert main([{str(operation)!r}, '--log-level', 'error']) == 0\n"
    assert heavy_modules_after(code) == ["pyarrow"]
