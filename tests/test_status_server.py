"""The status server over real HTTP on 127.0.0.1 (an ephemeral port), beside real runs."""

import dataclasses
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import MappingProxyType

import pytest
from prometheus_client.parser import text_string_to_metric_families

from backend.config import LoadedOperation, load_operation
from backend.dtos import FillDTO, OrderDTO, OrderSide, OrderStatus, OrderType
from backend.interfaces import IWorker, WorkerCategory
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.order_gateway import OrderOutcome, OrderRequest
from backend.market_data import RawTick, TickSource
from backend.portfolio import Ledger, SimulatedGateway, StrategyAccount
from backend.portfolio.fill_rules import FillRules
from backend.portfolio.ledger import AccountSnapshot, OpenPosition
from services.cli import main
from services.link_lifecycle import UnknownLinkError
from services.operation_reload import ReloadPlan
from services.operation_service import OperationService
from services.status_server import StatusServer
from services.strategy_run import RunSnapshot, RunStatus
from services.worker_factory import WorkerFactory
from tests.helpers import backtest_environment, blueprint, one_row, simulated_account, tick, write_config_tree
from tests.probes import PLUGINS_WITH_PROBE, probe_blueprint

TOKEN_ENV, TOKEN = "OPDAEMON_TEST_CONTROL_TOKEN", "s3cret-token"


class GatedSource(TickSource):
    """Hands out the ticks a test puts in, one at a time; None ends the data. live: no end known."""

    def __init__(self, live: bool = False) -> None:
        self.total_ticks = None if live else 1_000_000
        self.pending: queue.Queue[RawTick | None] = queue.Queue()
        self.stale_since: datetime | None = None

    def blocks(self, stop: threading.Event) -> Iterator[CandleColumns]:
        while not stop.is_set():
            try:
                item = self.pending.get(timeout=0.02)
            except queue.Empty:
                continue
            if item is None:
                return
            yield one_row(item)


class FlipFlop(IWorker):
    """Buys when flat, sells everything when holding: one entry or exit per tick."""

    plugin_name = "flip_flop"
    category = WorkerCategory.EXECUTION

    def process(self, asset: str) -> None:
        base = self._base(asset)
        held = base.portfolio.position_qty
        side, quantity = (OrderSide.SELL, held) if held > 0 else (OrderSide.BUY, base.portfolio.cash / base.close / 2)
        self.services.broker.submit(
            OrderDTO(asset=asset, side=side, quantity=quantity, reference_price=base.close, reason="flip"),
            base.timestamp,
        )


PLUGINS = {**PLUGINS_WITH_PROBE, "flip_flop": FlipFlop}


def wait_until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class Client:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def request(self, path: str, method: str = "GET", token: str | None = None) -> tuple[int, str, str]:
        """(status, content type, body)."""
        request = urllib.request.Request(self.base + path, method=method, data=b"" if method == "POST" else None)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.headers["Content-Type"], response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers["Content-Type"], error.read().decode()

    def json(self, path: str, method: str = "GET", token: str | None = None) -> tuple[int, object]:
        status, content_type, body = self.request(path, method, token)
        assert content_type.startswith("application/json"), (status, content_type, body)
        return status, json.loads(body)

    def metrics(self) -> dict[tuple[str, tuple], float]:
        status, _, body = self.request("/metrics")
        assert status == 200
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body) for sample in family.samples
        }


def gated_service(tmp_path, blueprints, source: GatedSource, **operation_settings) -> OperationService:
    path = write_config_tree(tmp_path, [(b, "bt") for b in blueprints], blueprints, {"bt": backtest_environment()},
                             [tick(0, 100)], operation_settings)
    return OperationService(load_operation(path), WorkerFactory(PLUGINS), source_factory=lambda env: source)


@pytest.fixture
def serving() -> Iterator[Callable[..., tuple[StatusServer, Client]]]:
    """serve(service, token=None): the service running with a status server on an ephemeral port."""
    started: list[tuple[OperationService, StatusServer]] = []

    def serve(service: OperationService, token: str | None = None) -> tuple[StatusServer, Client]:
        server = StatusServer(service, "127.0.0.1", 0, token)
        server.start()
        service.start()
        started.append((service, server))
        return server, Client(server.port)

    yield serve
    for service, server in started:
        service.stop()
        service.wait()
        server.stop()


def test_metrics_and_strategies_match_the_summaries_of_a_real_backtest(tmp_path):
    ticks = [tick(i, 100 + 10 * ((i // 24) % 2) + (i % 7)) for i in range(24 * 30)]
    dca = blueprint({"opportunity": [{"plugin": "dca_schedule_opportunity"}],
                     "planning": [{"plugin": "position_sizer"}]})
    path = write_config_tree(tmp_path, [("dca", "bt"), ("probe", "bt")], {"dca": dca, "probe": probe_blueprint("p")},
                             {"bt": backtest_environment()}, ticks)
    service = OperationService(load_operation(path), WorkerFactory(PLUGINS))
    server = StatusServer(service, "127.0.0.1", 0)
    server.start()
    try:
        client = Client(server.port)
        summaries = {s.strategy_link: s for s in service.run()}
        assert summaries["dca@bt"].account.trades > 0  # the comparison below means something
        metrics = client.metrics()
        for link, summary in summaries.items():
            label = (("strategy_link", link),)
            assert metrics[("opdaemon_ticks_processed_total", label)] == summary.ticks_processed == len(ticks)
            assert metrics[("opdaemon_trades_total", label)] == summary.account.trades
            assert metrics[("opdaemon_equity", label)] == pytest.approx(summary.account.final_equity)
            assert metrics[("opdaemon_pnl", label)] == pytest.approx(summary.account.pnl)
            assert metrics[("opdaemon_max_drawdown_pct", label)] == pytest.approx(summary.account.max_drawdown_pct)
            assert metrics[("opdaemon_tick_latency_seconds_count", label)] == len(ticks)
            assert metrics[("opdaemon_tick_latency_seconds_bucket", (("le", "+Inf"), *label))] == len(ticks)
            assert metrics[("opdaemon_errors_total", label)] == 0
            assert metrics[("opdaemon_queue_depth", label)] == 0
        filled = ("opdaemon_orders_total", (("outcome", "filled"), ("strategy_link", "dca@bt")))
        assert metrics[filled] == summaries["dca@bt"].account.trades
        assert metrics[("opdaemon_environment_ticks_total", (("environment", "bt"),))] == len(ticks)
        assert metrics[("opdaemon_environment_gaps_total", (("environment", "bt"),))] == 0
        assert ("opdaemon_environment_last_candle_age_seconds", (("environment", "bt"),)) in metrics

        status, listed = client.json("/strategies")
        assert status == 200 and [s["strategy_link"] for s in listed] == ["dca@bt", "probe@bt"]
        status, one = client.json("/strategies/dca@bt")
        assert status == 200 and one["status"] == "completed" and one["last_error"] is None
        assert one["ticks_processed"] == len(ticks) and one["account"]["trades"] == summaries["dca@bt"].account.trades
        assert one["account"]["equity"] == pytest.approx(summaries["dca@bt"].account.final_equity)
        assert one["last_tick"]["candle_time"] == ticks[-1].timestamp.isoformat()
        (held,) = summaries["dca@bt"].account.open_positions  # the DCA still holds at the end
        close, entry = ticks[-1].close, held.average_entry_price
        assert one["account"]["positions"] == {"BTC/USD": {
            "quantity": pytest.approx(held.quantity), "average_entry_price": pytest.approx(entry),
            "price": close, "unrealised_pnl": pytest.approx(held.quantity * (close - entry)),
            "unrealised_pnl_pct": pytest.approx((close / entry - 1) * 100), "dust": False, "protection": None}}
        assert one["account"]["open_orders"] == [] and one["account"]["reserved_cash"] == 0
        # A backtest that finished is not stale.
        assert client.json("/readyz") == (200, {"status": "ready"})
    finally:
        server.stop()


def test_healthz_and_readyz_while_healthy_then_503_once_a_run_failed(tmp_path, serving):
    source = GatedSource()
    service = gated_service(tmp_path, {"bad": probe_blueprint("bad", crash_at_tick=2), "good": probe_blueprint("g")},
                            source)
    _, client = serving(service)
    assert client.json("/healthz") == (200, {"status": "ok"})
    source.pending.put(tick(1, 100))
    wait_until(lambda: all(run.ticks_processed == 1 for run in service.runs))
    assert client.json("/readyz") == (200, {"status": "ready"})
    source.pending.put(tick(2, 101))
    wait_until(lambda: service.runs[0].status is RunStatus.FAILED)
    status, body = client.json("/readyz")
    assert status == 503
    assert body["reasons"] == ["strategy link bad@bt failed: ZeroDivisionError: probe crashed on purpose"]
    assert client.json("/healthz")[0] == 200
    assert client.metrics()[("opdaemon_errors_total", (("strategy_link", "bad@bt"),))] == 1
    status, bad = client.json("/strategies/bad@bt")
    assert bad["status"] == "failed" and bad["last_error"] == "ZeroDivisionError: probe crashed on purpose"


def test_readyz_is_503_while_a_live_feed_is_stale(tmp_path, serving):
    source = GatedSource(live=True)
    service = gated_service(tmp_path, {"good": probe_blueprint("g")}, source)
    _, client = serving(service)
    source.pending.put(tick(1, 100))
    wait_until(lambda: service.runs[0].ticks_processed == 1)
    assert client.json("/readyz")[0] == 200
    # The source says its stream has been silent too long.
    source.stale_since = datetime(2024, 1, 1, tzinfo=UTC)
    status, body = client.json("/readyz")
    assert status == 503 and body["reasons"] == ["environment bt: market data stale since 2024-01-01T00:00:00+00:00"]
    source.stale_since = None
    assert client.json("/readyz")[0] == 200
    # No candle for longer than the timeframe (1h) plus the margin (60 s).
    feed = service.feeds[0]
    feed.last_tick_at = time.monotonic() - 3661
    status, body = client.json("/readyz")
    assert status == 503 and body["reasons"][0].startswith("environment bt: no candle for 366")
    assert client.metrics()[("opdaemon_environment_last_candle_age_seconds", (("environment", "bt"),))] > 3660
    source.pending.put(tick(2, 101))
    wait_until(lambda: service.runs[0].ticks_processed == 2)
    assert client.json("/readyz")[0] == 200


def test_pause_blocks_entries_but_not_exits_and_resume_restores_them(tmp_path, serving, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    source = GatedSource()
    flip = blueprint({}) | {"workforce": {"execution": [{"plugin": "flip_flop"}]}}
    service = gated_service(tmp_path, {"flip": flip}, source, control_token_env=TOKEN_ENV)
    server = StatusServer.for_operation(service, "127.0.0.1", 0)
    _, client = serving(service, server._token)
    account = service.runs[0].tick_manager.account

    def feed(index: int) -> None:
        source.pending.put(tick(index, 100 + index))
        wait_until(lambda: service.runs[0].ticks_processed == index)

    feed(1)  # flat: buys
    assert account.ledger.state.trades == 1 and account.ledger.position("BTC/USD").qty > 0
    status, body = client.json("/strategies/flip@bt/pause", "POST", TOKEN)
    assert status == 200 and body["paused"] == "paused by the operator (status server)"
    assert client.json("/strategies/flip@bt") == (200, body)  # the answer is the link as GET shows it
    feed(2)  # holding: the exit is allowed while paused
    assert account.ledger.state.trades == 2 and account.ledger.position("BTC/USD").qty == 0
    feed(3)  # flat: the entry is skipped while paused
    assert account.ledger.state.trades == 2 and account.ledger.position("BTC/USD").qty == 0
    metrics = client.metrics()
    label = ("strategy_link", "flip@bt")
    assert metrics[("opdaemon_orders_total", (("outcome", "skipped"), label))] == 1
    assert metrics[("opdaemon_paused", (label,))] == 1
    status, body = client.json("/strategies/flip@bt/resume", "POST", TOKEN)
    assert status == 200 and body["paused"] is None
    assert client.json("/strategies/flip@bt") == (200, body)
    feed(4)  # flat again: buys again
    assert account.ledger.state.trades == 3 and account.ledger.position("BTC/USD").qty > 0
    assert client.metrics()[("opdaemon_paused", (label,))] == 0


def test_posts_without_or_with_a_wrong_token_are_refused(tmp_path, serving):
    service = gated_service(tmp_path, {"good": probe_blueprint("g")}, GatedSource())
    _, client = serving(service, TOKEN)
    account = service.runs[0].tick_manager.account
    for token in (None, "wrong", TOKEN + "x", ""):
        status, body = client.json("/strategies/good@bt/pause", "POST", token)
        assert status == 401 and "bearer token" in body["error"]
    assert account.paused is None
    assert client.json("/strategies/nope@bt/pause", "POST", TOKEN) == (404, {"error": "no strategy link 'nope@bt'"})
    assert client.json("/strategies/good@bt/explode", "POST", TOKEN)[0] == 404
    assert client.json("/strategies/good@bt/pause", "POST", TOKEN)[0] == 200
    assert account.paused is not None


def test_without_a_token_control_is_disabled_and_bad_requests_get_json_errors(tmp_path, serving):
    service = gated_service(tmp_path, {"good": probe_blueprint("g")}, GatedSource())
    _, client = serving(service, None)
    status, body = client.json("/strategies/good@bt/pause", "POST", TOKEN)
    assert status == 403 and "disabled" in body["error"]
    assert service.runs[0].tick_manager.account.paused is None
    assert client.json("/strategies/nope@bt") == (404, {"error": "no strategy link 'nope@bt'"})
    status, body = client.json("/no/such/path")
    assert status == 404 and "error" in body
    status, body = client.json("/healthz", "POST")
    assert status == 405 and "error" in body


def test_a_token_variable_that_is_not_set_disables_control(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    service = gated_service(tmp_path, {"good": probe_blueprint("g")}, GatedSource(), control_token_env=TOKEN_ENV)
    assert StatusServer.for_operation(service, "127.0.0.1", 0)._token is None
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert StatusServer.for_operation(service, "127.0.0.1", 0)._token == TOKEN


def test_run_operation_http_serves_beside_the_runs_and_stops_with_them(tmp_path, capsys):
    path = write_config_tree(tmp_path, [("p", "bt")], {"p": blueprint({})}, {"bt": backtest_environment()},
                             [tick(i, 100 + i) for i in range(50)])
    assert main([str(path), "--http", "127.0.0.1:0"]) == 0
    _, err = capsys.readouterr()
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    started = next(e for e in events if e["event"] == "status_server_started")
    assert started["host"] == "127.0.0.1" and started["port"] > 0 and started["control"] == "disabled"
    assert names.index("status_server_started") < names.index("operation_started")
    assert names.index("operation_finished") < names.index("status_server_stopped")


def test_run_operation_http_rejects_a_bad_address(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["whatever.yaml", "--http", "localhost:http"])
    assert exit_.value.code == 2
    assert "not HOST:PORT" in capsys.readouterr().err


def test_an_error_no_callback_handled_in_the_server_loop_is_one_log_event(tmp_path, serving, logs, caplog):
    """asyncio's default handler would print a plain-text traceback on stderr."""
    service = gated_service(tmp_path, {"p": probe_blueprint("p")}, GatedSource())
    server, client = serving(service)

    def failing_callback() -> None:
        raise RuntimeError("boom in a callback")

    server._loop.call_soon_threadsafe(failing_callback)
    wait_until(lambda: any(e["event"] == "event_loop_error" for e in logs))
    (error,) = [e for e in logs if e["event"] == "event_loop_error"]
    assert error["error"] == "RuntimeError: boom in a callback" and "failing_callback" in error["where"]
    assert not [r for r in caplog.records if r.name == "asyncio"]
    assert client.json("/healthz") == (200, {"status": "ok"})  # still serving


def consistency_problems(answer: dict, starting_capital: float) -> list[str]:
    """What does not add up in one answer of /strategies/{link} of a FlipFlop link (which holds a
    position after each odd trade and is flat after each even one)."""
    account = answer["account"]
    held = 0.0
    for position in account["positions"].values():
        held += position["quantity"] * position["price"]
    problems = []
    if account["equity"] != pytest.approx(account["cash"] + held, rel=1e-12, abs=1e-9):
        problems.append(f"equity {account['equity']} != cash {account['cash']} + positions {held}")
    if account["pnl"] != pytest.approx(account["equity"] - starting_capital, rel=1e-12, abs=1e-9):
        problems.append(f"pnl {account['pnl']} != equity {account['equity']} - {starting_capital}")
    if len(account["positions"]) != account["trades"] % 2:
        problems.append(f"{len(account['positions'])} positions after {account['trades']} trades")
    if account["orders"]["filled"] != account["trades"]:
        problems.append(f"{account['orders']['filled']} orders filled, {account['trades']} trades")
    return problems


def test_every_answer_during_a_running_backtest_is_one_consistent_snapshot(tmp_path):
    """A client hammers /strategies/{link} while a real backtest trades on every candle in the
    run's thread: each answer is the account at one moment (equity = cash + positions at their
    prices, as many positions as the trades' parity says), and the answers move during the run."""
    ticks = [tick(i, 100 + i % 7) for i in range(8_000)]  # hours within the environment's 2024
    flip = blueprint({}) | {"workforce": {"execution": [{"plugin": "flip_flop"}]}}
    path = write_config_tree(tmp_path, [("flip", "bt")], {"flip": flip}, {"bt": backtest_environment()}, ticks)
    service = OperationService(load_operation(path), WorkerFactory(PLUGINS))
    server = StatusServer(service, "127.0.0.1", 0)
    server.start()
    answers: list[dict] = []
    done = threading.Event()

    def hammer() -> None:
        client = Client(server.port)
        while not done.is_set():
            status, answer = client.json("/strategies/flip@bt")
            assert status == 200
            answers.append(answer)

    hammering = threading.Thread(target=hammer, daemon=True)
    hammering.start()
    try:
        (summary,) = service.run()
    finally:
        done.set()
        hammering.join(10)
        server.stop()
    running = [answer for answer in answers if answer["status"] == "running"]
    assert len({answer["ticks_processed"] for answer in running}) >= 2  # read while it traded
    problems = [(answer["ticks_processed"], problem) for answer in answers
                for problem in consistency_problems(answer, 10_000)]
    assert problems == []
    assert summary.account.trades == len(ticks)  # one fill a candle: the account changed under the reads


def test_a_run_snapshot_is_frozen_and_keeps_its_moment(tmp_path, serving):
    source = GatedSource()
    flip = blueprint({}) | {"workforce": {"execution": [{"plugin": "flip_flop"}]}}
    service = gated_service(tmp_path, {"flip": flip}, source)
    serving(service)
    (run,) = service.runs
    source.pending.put(tick(1, 100))
    wait_until(lambda: run.snapshot().ticks_processed == 1)
    bought = run.snapshot()
    assert bought.account.trades == 1 and [p.asset for p in bought.account.positions] == ["BTC/USD"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        bought.ticks_processed = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        bought.account.cash = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        bought.account.order_outcomes["filled"] = 0  # type: ignore[index]
    source.pending.put(tick(2, 110))
    wait_until(lambda: run.snapshot().ticks_processed == 2)
    sold = run.snapshot()
    assert sold.account.trades == 2 and sold.account.positions == ()
    # The earlier snapshot still shows its own moment.
    assert bought.ticks_processed == 1 and bought.account.trades == 1 and len(bought.account.positions) == 1
    assert bought.account.order_outcomes["filled"] == 1 and sold.account.order_outcomes["filled"] == 2


class SnapshotsOnly:
    """An operation as the status server may see it, and nothing more: snapshots of its runs
    (built here by hand: no run, account or ledger exists), its feeds and its control calls."""

    def __init__(self, operation: LoadedOperation, snapshot: RunSnapshot) -> None:
        self.operation = operation
        self.feeds: list = []
        self._snapshot = snapshot

    def snapshots(self) -> list[RunSnapshot]:
        return [self._snapshot]

    def snapshot_of(self, link_id: str) -> RunSnapshot:
        if link_id != self._snapshot.strategy_link:
            raise UnknownLinkError(f"no strategy link {link_id!r}")
        return self._snapshot

    def pause_link(self, link_id: str) -> None:
        self._snapshot = dataclasses.replace(self.snapshot_of(link_id), paused="by hand")

    def resume_link(self, link_id: str) -> None:
        raise AssertionError("not called")

    stop_link = start_link = resume_link

    def force_exit(self, link_id: str, asset: str | None = None) -> list[FillDTO | None]:
        raise AssertionError("not called")

    def force_entry(self, link_id: str, asset: str) -> None:
        raise AssertionError("not called")

    def reload(self, trigger: str) -> ReloadPlan:
        raise AssertionError("not called")


def run_snapshot(account: AccountSnapshot) -> RunSnapshot:
    """A running link's snapshot (link p@bt) showing account."""
    return RunSnapshot(strategy_link="p@bt", blueprint="p", environment="bt", status=RunStatus.RUNNING,
                       error=None, paused=None, queue_depth=4, ticks_processed=7,
                       latency_counts=(7, *[0] * 14), latency_sum=0.002,
                       last_tick_time=datetime(2024, 1, 1, 6, tzinfo=UTC), last_tick_at=1_700_000_000.0,
                       account=account)


def test_the_status_server_reads_runs_through_their_snapshots_only(tmp_path):
    """Given an operation that has snapshots and nothing else (no run, account or ledger to reach
    into), the server answers /strategies, /strategies/{link}, /metrics and a pause from them."""
    path = write_config_tree(tmp_path, [("p", "bt")], {"p": blueprint({})}, {"bt": backtest_environment()},
                             [tick(0, 100)])
    held = OpenPosition("BTC/USD", 2.0, 100.0, 110.0, 20.0, 10.0, False)
    account = AccountSnapshot(starting_capital=1_000.0, cash=800.0, equity=1_020.0, peak_equity=1_050.0,
                              max_drawdown_pct=4.0, trades=3, fees_paid=1.5, positions=(held,),
                              order_outcomes=MappingProxyType({"filled": 3, "rejected": 1}), unsettled_orders=0)
    server = StatusServer(SnapshotsOnly(load_operation(path), run_snapshot(account)), "127.0.0.1", 0, TOKEN)
    server.start()
    try:
        client = Client(server.port)
        status, one = client.json("/strategies/p@bt")
        assert status == 200 and one == {
            "strategy_link": "p@bt", "blueprint": "p", "environment": "bt", "status": "running", "paused": None,
            "ticks_processed": 7, "queue_depth": 4,
            "last_tick": {"candle_time": "2024-01-01T06:00:00+00:00", "processed_at": 1_700_000_000.0},
            "last_error": None,
            "account": {"equity": 1_020.0, "pnl": 20.0, "drawdown_pct": pytest.approx((1 - 1_020 / 1_050) * 100),
                        "max_drawdown_pct": 4.0, "cash": 800.0, "trades": 3, "fees_paid": 1.5,
                        "positions": {"BTC/USD": {"quantity": 2.0, "average_entry_price": 100.0, "price": 110.0,
                                                  "unrealised_pnl": 20.0, "unrealised_pnl_pct": 10.0,
                                                  "dust": False, "protection": None}},
                        "per_asset": {},
                        "orders": {"filled": 3, "rejected": 1}, "unsettled_orders": 0, "open_orders": [],
                        "open_orders_count": 0, "reserved_cash": 0.0, "oldest_open_order_age_seconds": None}}
        assert client.json("/strategies") == (200, [one])
        metrics = client.metrics()
        label = (("strategy_link", "p@bt"),)
        assert metrics[("opdaemon_ticks_processed_total", label)] == 7
        assert metrics[("opdaemon_tick_latency_seconds_count", label)] == 7
        assert metrics[("opdaemon_queue_depth", label)] == 4
        assert metrics[("opdaemon_equity", label)] == 1_020
        assert metrics[("opdaemon_position", (("asset", "BTC/USD"), *label))] == 2
        assert metrics[("opdaemon_orders_total", (("outcome", "rejected"), *label))] == 1
        assert metrics[("opdaemon_run_status", (("status", "running"), *label))] == 1
        status, paused = client.json("/strategies/p@bt/pause", "POST", TOKEN)
        assert status == 200 and paused == one | {"paused": "by hand"}
        assert client.json("/readyz") == (200, {"status": "ready"})
    finally:
        server.stop()


@pytest.fixture
def serve_account(tmp_path) -> Iterator[Callable[[StrategyAccount], Client]]:
    """serve(account): a status server showing the account's snapshot now, as link p@bt's."""
    path = write_config_tree(tmp_path, [("p", "bt")], {"p": blueprint({})}, {"bt": backtest_environment()},
                             [tick(0, 100)])
    operation = load_operation(path)
    servers: list[StatusServer] = []

    def serve(account: StrategyAccount) -> Client:
        for server in servers:
            server.stop()
        server = StatusServer(SnapshotsOnly(operation, run_snapshot(account.snapshot())), "127.0.0.1", 0)
        server.start()
        servers.append(server)
        return Client(server.port)

    yield serve
    for server in servers:
        server.stop()


def trading_account(gateway: SimulatedGateway | None = None) -> StrategyAccount:
    """A simulated account of 10 000 (0.1 % fees) that has opened the candle of tick(1, 100)."""
    account = (simulated_account(Ledger(10_000.0), fee_rate=0.001) if gateway is None
               else StrategyAccount(Ledger(10_000.0), gateway))
    account.open_tick(tick(1, 100), trading=True)
    return account


def test_a_resting_limit_order_is_shown_with_its_reserved_cash_and_age(serve_account):
    account = trading_account()
    placed_at = tick(1, 100).timestamp
    ticket = account.place(OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=10, reference_price=100,
                                    reason="dip", order_type=OrderType.LIMIT, limit_price=90), placed_at)
    assert ticket.status is OrderStatus.OPEN
    time.sleep(0.05)  # the order is some age when read
    client = serve_account(account)
    status, answer = client.json("/strategies/p@bt")
    assert status == 200
    shown = answer["account"]
    (order,) = shown["open_orders"]
    age = order.pop("age_seconds")
    assert 0.05 <= age < 5 and shown["oldest_open_order_age_seconds"] >= age
    assert order == {"client_order_id": ticket.client_order_id, "asset": "BTC/USD", "side": "buy", "type": "limit",
                     "quantity": 10.0, "filled_quantity": 0.0, "limit_price": 90.0, "trigger_price": None,
                     "status": "open", "protective": False, "placed_at": placed_at.isoformat(),
                     "exchange_order_id": None, "reason": "dip"}
    assert shown["open_orders_count"] == 1
    assert shown["reserved_cash"] == pytest.approx(10 * 90 * 1.001)
    assert shown["positions"] == {}
    metrics = client.metrics()
    label = (("strategy_link", "p@bt"),)
    assert metrics[("opdaemon_open_orders", label)] == 1
    assert metrics[("opdaemon_reserved_cash", label)] == pytest.approx(10 * 90 * 1.001)
    assert 0.05 <= metrics[("opdaemon_oldest_open_order_age_seconds", label)] < 5
    assert metrics[("opdaemon_unprotected_positions", label)] == 0
    assert client.json("/readyz") == (200, {"status": "ready"})
    # Once cancelled, nothing is open nor reserved.
    account.cancel(ticket.client_order_id)
    client = serve_account(account)
    shown = client.json("/strategies/p@bt")[1]["account"]
    assert shown["open_orders"] == [] and shown["open_orders_count"] == 0 and shown["reserved_cash"] == 0
    assert shown["oldest_open_order_age_seconds"] is None
    assert client.metrics()[("opdaemon_oldest_open_order_age_seconds", label)] == 0


def protected_entry(account: StrategyAccount) -> None:
    """Buy 5 at market, protected by a stop at 95 and a take-profit at 120."""
    account.place(OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=5, reference_price=100, reason="entry",
                           stop_loss_price=95, take_profit_price=120), tick(1, 100).timestamp)


def test_a_protected_position_shows_its_orders_and_is_not_ready_once_its_stop_is_cancelled(serve_account):
    account = trading_account()
    protected_entry(account)
    stop, take_profit = account.open_orders("BTC/USD")
    assert (stop.order_type, take_profit.order_type) == (OrderType.STOP_LOSS, OrderType.TAKE_PROFIT)
    client = serve_account(account)
    shown = client.json("/strategies/p@bt")[1]["account"]
    assert shown["positions"]["BTC/USD"]["protection"] == {
        "stop": {"price": 95.0, "client_order_id": stop.client_order_id, "status": "open", "open": True},
        "take_profit": {"price": 120.0, "client_order_id": take_profit.client_order_id, "status": "open",
                        "open": True}}
    assert [(o["type"], o["protective"], o["trigger_price"]) for o in shown["open_orders"]] == [
        ("stop_loss", True, 95.0), ("take_profit", True, 120.0)]
    assert shown["reserved_cash"] == 0  # trigger orders hold no funds
    assert client.json("/readyz") == (200, {"status": "ready"})
    assert client.metrics()[("opdaemon_unprotected_positions", (("strategy_link", "p@bt"),))] == 0

    account.cancel(stop.client_order_id)  # by hand, between two candles
    client = serve_account(account)
    status, body = client.json("/readyz")
    assert status == 503 and body["reasons"] == [
        "strategy link p@bt: position in BTC/USD has no open protective stop (asked at 95)"]
    protection = client.json("/strategies/p@bt")[1]["account"]["positions"]["BTC/USD"]["protection"]
    assert protection["stop"] == {"price": 95.0, "client_order_id": None, "status": None, "open": False}
    assert protection["take_profit"]["open"] is True
    assert client.metrics()[("opdaemon_unprotected_positions", (("strategy_link", "p@bt"),))] == 1

    # The next candle places the stop again: ready again.
    account.open_tick(tick(2, 101), trading=True)
    client = serve_account(account)
    assert client.json("/readyz") == (200, {"status": "ready"})


class UnansweredStops(SimulatedGateway):
    """Protective orders are sent but their outcome never comes back (a timeout)."""

    def execute(self, request: OrderRequest) -> OrderOutcome:
        if request.protective:
            return OrderOutcome(OrderStatus.UNKNOWN, reason="timed out")
        return super().execute(request)


def test_a_position_whose_stop_is_unsettled_is_not_ready_with_that_reason(serve_account):
    account = trading_account(UnansweredStops(FillRules()))
    protected_entry(account)
    client = serve_account(account)
    status, body = client.json("/readyz")
    assert status == 503 and body["reasons"] == [
        "strategy link p@bt: protective stop of BTC/USD (at 95) is unknown until settled"]
    stop = client.json("/strategies/p@bt")[1]["account"]["positions"]["BTC/USD"]["protection"]["stop"]
    assert stop["status"] == "unknown" and stop["open"] is False
    assert client.metrics()[("opdaemon_unprotected_positions", (("strategy_link", "p@bt"),))] == 1


def test_a_position_without_protection_asked_or_dust_is_ready(serve_account):
    account = trading_account()
    account.place(OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=5, reference_price=100, reason="entry"),
                  tick(1, 100).timestamp)
    client = serve_account(account)
    assert client.json("/strategies/p@bt")[1]["account"]["positions"]["BTC/USD"]["protection"] is None
    assert client.json("/readyz") == (200, {"status": "ready"})
    # Protection asked for a position the venue deems dust: no stop can exist, none is asked.
    account.ledger.set_minimum_quantity("BTC/USD", 10.0)
    account.protect("BTC/USD", 95.0)
    client = serve_account(account)
    assert client.json("/strategies/p@bt")[1]["account"]["positions"]["BTC/USD"]["dust"] is True
    assert client.json("/readyz") == (200, {"status": "ready"})
