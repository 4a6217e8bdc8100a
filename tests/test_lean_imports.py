"""Pay only for what is used (issue 19): the CLI and the live path import none of the research,
report or Parquet stack, nor rich or ccxt.pro, and neither does a backtest of a CSV file; each in
a fresh interpreter (`python -c`), so nothing another test imported counts.

numpy stays: the live path's own computations are numpy (the workers' indicators and columnar
contract, the account's ledger, the candle DTOs)."""

import json
import subprocess
import sys

import pytest
import yaml

from tests.helpers import REPO, write_config_tree

pytestmark = pytest.mark.e2e

DEMO = "config/operations/backtest_demo.yaml"
# The research stack (optuna, ray), the report's charts (matplotlib), the Parquet stack (pyarrow,
# and pandas, which pyarrow imports for many conversions), the progress bars (rich), and ccxt.pro
# (every exchange's websocket client: imported when a websocket connects, not with the modules).
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
