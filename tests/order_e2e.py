"""Shared pieces of the resting-order end-to-end tests (tests/test_order_parity.py,
tests/test_live_orders_e2e.py): a slice of the bundled hourly BTC/USD data moved to the last hours
(so the daemon's clock counts every row as closed), written as a backtest file and served candle by
candle by the fake Kraken, which matches the resting orders on each candle before the daemon sees it
close, as the simulator does on the candle after the one an order was placed on."""

import csv
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.daemon import Daemon, wait_until
from tests.fake_kraken import FakeKraken
from tests.helpers import REPO, write_yaml
from tests.test_status_server import Client

HOUR = 3600
PAIR = "XXBTZUSD"
STEM = "op"  # the operation file is config/operations/op.yaml
DATA = REPO / "data" / "kraken_xbtusd_1h_2023q1.csv"
SHIPPED = REPO / "config" / "strategies"


def data_slice(first: str, count: int) -> list[tuple[float, float, float, float, float]]:
    """count hourly rows (open, high, low, close, volume) of the bundled file from the row at `first`."""
    with DATA.open() as file:
        rows = list(csv.DictReader(file))
    start = next(i for i, row in enumerate(rows) if row["timestamp"] == first)
    return [(float(r["open"]), float(r["high"]), float(r["low"]), float(r["close"]), float(r["volume"]))
            for r in rows[start:start + count]]


class Market:
    """The slice's rows at hourly times ending just before this hour: row i opens at `times[i]`.
    `show(i)` serves rows 0..i over REST (row i forming, so i-1 closed)."""

    def __init__(self, fake: FakeKraken | None, rows: list[tuple[float, float, float, float, float]],
                 pair: str = PAIR, missing: frozenset[int] = frozenset()) -> None:
        """pair: the fake's pair id the rows are served as; missing: rows Kraken never publishes
        (a candle without a trade: a hole in the file too)."""
        self.fake, self.rows, self.pair, self.missing = fake, rows, pair, missing
        first = (int(time.time()) // HOUR - len(rows) - 1) * HOUR
        self.times = [first + i * HOUR for i in range(len(rows))]

    def moment(self, index: int) -> datetime:
        return datetime.fromtimestamp(self.times[index], tz=UTC)

    def kraken_row(self, index: int) -> list:
        o, h, low, c, v = self.rows[index]
        return [self.times[index], f"{o:.1f}", f"{h:.1f}", f"{low:.1f}", f"{c:.1f}", f"{c:.1f}", f"{v:.8f}", 10]

    def show(self, forming: int) -> None:
        assert self.fake is not None
        self.fake.set_candles(self.pair, [self.kraken_row(i) for i in range(forming + 1) if i not in self.missing])

    def trade(self, index: int) -> None:
        """The exchange trades row index: its open orders are matched against it, its price is the close."""
        assert self.fake is not None
        o, h, low, c, _ = self.rows[index]
        self.fake.trade_candle(self.pair, self.times[index], o, h, low, c)

    def write_csv(self, path: Path) -> Path:
        lines = ["timestamp,open,high,low,close,volume"]
        for index, (o, h, low, c, v) in enumerate(self.rows):
            if index in self.missing:
                continue
            lines.append(f"{self.moment(index).strftime('%Y-%m-%dT%H:%M:%SZ')},{o},{h},{low},{c},{v}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        return path


def operation_tree(root: Path, blueprint_id: str, blueprint: dict, environment_id: str,
                   environment: dict) -> Path:
    """config/ under root with one link, blueprint_id@environment_id; the operation file's path."""
    write_yaml(root / "config" / "strategies" / f"{blueprint_id}.yaml", blueprint)
    write_yaml(root / "config" / "environments" / f"{environment_id}.yaml", environment)
    operation = {"display_name": "resting orders", "strategy_links": [
        {"strategy_blueprint_id": blueprint_id, "execution_environment_id": environment_id, "is_active": True}]}
    return write_yaml(root / "config" / "operations" / f"{STEM}.yaml", operation)


class Run:
    """A run-operation process on an operation of one link, with its status server on a free port
    (`--http`): the test reads when a candle has been processed from it. Killed by its pid if the
    test leaves it running (call `kill_if_running` in a finally)."""

    def __init__(self, operation: Path, data_dir: Path, link: str, *flags: object,
                 env: dict[str, str] | None = None) -> None:
        self.link, self.data_dir = link, data_dir
        self.daemon = Daemon([operation, "--data-dir", data_dir, "--http", "127.0.0.1:0", *flags],
                             module="tests.fast_cli", env=env)
        listening = self.daemon.wait_for_event("status_server_started")
        self.client = Client(listening["port"])

    def status(self) -> dict:
        code, body = self.client.json(f"/strategies/{self.link}")
        assert code == 200, body
        assert isinstance(body, dict)
        return body

    def last_candle(self) -> str | None:
        return self.status()["last_tick"]["candle_time"]

    def wait_processed(self, moment: datetime) -> None:
        """Until the link has processed the candle opened at moment (every worker ran on it)."""
        wait_until(lambda: self.last_candle() == moment.isoformat(), f"candle {moment} processed", daemon=self.daemon)

    def stop(self) -> None:
        """SIGTERM: it must exit 0."""
        self.daemon.signal(signal.SIGTERM)
        code, _ = self.daemon.finish()
        assert code == 0, self.daemon.stderr

    def kill(self) -> None:
        self.daemon.signal(signal.SIGKILL)
        self.daemon.finish()

    def kill_if_running(self) -> None:
        if self.daemon.process.poll() is None:
            self.daemon.process.kill()
            self.daemon.process.wait(5)


def step(market: Market, run: Run, index: int, trade: bool = True) -> None:
    """Row index trades on the exchange (trade=True), then closes; returns once the run has
    processed it."""
    if trade:
        market.trade(index)
    market.show(index + 1)
    run.wait_processed(market.moment(index))


def report_rows(report_dir: Path, link: str, name: str) -> list[dict]:
    with (report_dir / link / name).open() as file:
        return list(csv.DictReader(file))


def assert_clean(*runs: Run) -> None:
    """No error line and no traceback in the runs' logs."""
    for run in runs:
        assert [e for e in run.daemon.events() if e.get("level") in ("error", "critical")] == [], run.daemon.stderr
        assert "Traceback" not in run.daemon.stderr
