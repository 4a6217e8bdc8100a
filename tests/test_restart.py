"""Durable live accounts end to end: the real CLI in real processes (kill -9, SIGTERM, restarts,
a second daemon, a damaged database) against the fake Kraken in this process. Whatever happens,
the account in the state store must equal what the exchange executed, every fill booked once,
no candle traded twice and none of the candles that closed while the daemon was down traded.

Daemons that trade run `tests.fast_cli` (services.cli with ccxt's Kraken pacing cut to 1 ms per
cost unit: the real pacing waits 3 s before every private call); the ones refused at start run
`services.cli` itself."""

import signal
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backend.dtos import AccountState, OrderStatus
from backend.state import StateStore
from backend.venues.kraken.execution import link_tag
from tests.daemon import Daemon
from tests.fake_kraken import TEST_API_KEY, TEST_API_SECRET, FakeKraken, candle
from tests.helpers import write_config_tree
from tests.live_support import KEY_ENV, SECRET_ENV

pytestmark = pytest.mark.e2e

MINUTE = 60
PRICE = 50_000.0  # the fake fills market orders at this price (USD per BTC)
BUY_USD = 100.0  # what the strategy spends on every candle
CREDENTIALS = {KEY_ENV: TEST_API_KEY, SECRET_ENV: TEST_API_SECRET}
FAST_CLI, REAL_CLI = "tests.fast_cli", "services.cli"
STEM = "op"  # write_config_tree writes config/operations/op.yaml
LINK = "dca@live"
WRONG_KEY = "WRONG-KEY-that-the-fake-does-not-know"
NEW_KEY = "NEW-FAKE-TEST-KEY-after-a-key-rotation"
WRONG_SECRET = "d3Jvbmcgc2VjcmV0IHRoYXQgdGhlIGZha2UgcmVmdXNlcw=="  # base64, but not the fake's secret


# --- the exchange's candles, the operation, the daemons ------------------------------------------


class Minutes:
    """The fake's BTC/USD 1m candles at a constant price, opened hours ago: every row but the last
    (Kraken's forming candle) counts as closed, so adding a row closes the one before it."""

    def __init__(self, fake: FakeKraken, count: int) -> None:
        self._fake = fake
        self._first = (int(time.time()) // MINUTE - 180) * MINUTE
        self.rows: list[list] = []
        self.add(count)

    def add(self, count: int = 1) -> None:
        for _ in range(count):
            self.rows.append(candle(self._first + len(self.rows) * MINUTE, PRICE))
        self._fake.set_candles("XXBTZUSD", self.rows)

    def moment(self, index: int) -> datetime:
        return datetime.fromtimestamp(self.rows[index][0], tz=UTC)

    def time(self, index: int) -> str:
        """Row index's open time as the daemon logs it."""
        return self.moment(index).isoformat()


def dca_blueprint() -> dict:
    """Buys BUY_USD of BTC on every candle it trades (constant prices: never takes profit)."""
    return {
        "display_name": "buys every candle", "assets": ["BTC/USD"], "timeframe": "1m",
        "workforce": {
            "context": [{"plugin": "ema_detector"}, {"plugin": "market_regime_classifier"}],
            "opportunity": [{"plugin": "dca_schedule_opportunity", "params": {"interval_bars": 1}}],
            "planning": [{"plugin": "dca_planner", "params": {"quote_amount": BUY_USD}}],
            "execution": [{"plugin": "market_order_executor"}],
        },
    }


def live_operation(root: Path, fake: FakeKraken, blueprints: tuple[str, ...] = ("dca",),
                   operation_settings: dict | None = None, **environment: object) -> Path:
    """config/ under root: one link per blueprint, all on one mode: live environment (one key)."""
    settings = {
        "type": "live", "display_name": "fake kraken, live orders", "exchange": "kraken",
        "symbols": ["BTC/USD"], "timeframe": "1m", "mode": "live", "allow_live_orders": True,
        "api_key_env": KEY_ENV, "api_secret_env": SECRET_ENV, "api_url": fake.url,
        "market_data": "rest", "poll_interval_seconds": 0.05, "startup_timeout_seconds": 2, "order_wait_seconds": 2,
        "starting_capital": 10_000, "fee_rate": 0.0026, **environment,
    }
    return write_config_tree(root, [(b, "live") for b in blueprints], {b: dca_blueprint() for b in blueprints},
                             {"live": settings}, operation_settings=operation_settings)


StartDaemon = Callable[..., Daemon]


@pytest.fixture
def daemons() -> Iterator[StartDaemon]:
    """start(operation, data_dir, env=CREDENTIALS, module=FAST_CLI): a run-operation process; any
    still running when the test ends (it failed) is killed by its pid."""
    started: list[Daemon] = []

    def start(operation: Path, data_dir: Path, env: Mapping[str, str] = CREDENTIALS,
              module: str = FAST_CLI) -> Daemon:
        daemon = Daemon([str(operation), "--data-dir", str(data_dir)], module=module, env=env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(5)


def wait_for(daemon: Daemon, event: str, count: int = 1, timeout: float = 20, **fields: object) -> list[dict]:
    """The first `count` log events named event (with these field values); fails at once, with the
    daemon's stderr, when it exits before logging them."""
    deadline = time.monotonic() + timeout
    while True:
        exited = daemon.process.poll() is not None
        if exited:
            daemon._reader.join(5)  # every line it wrote has been read
        found = [e for e in daemon.events(event) if all(e.get(k) == v for k, v in fields.items())]
        if len(found) >= count:
            return found[:count]
        if exited or time.monotonic() > deadline:
            raise AssertionError(f"{count} x {event} {fields} not logged within {timeout} s "
                                 f"(exit code {daemon.process.poll()}); stderr:\n{daemon.stderr}")
        time.sleep(0.02)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def let_it_poll(fake: FakeKraken, polls: int = 10) -> None:
    """Wait until the daemon has asked for candles `polls` more times (so it had every chance to
    trade again, or twice)."""
    target = len(fake.received("public/OHLC")) + polls
    wait_until(lambda: len(fake.received("public/OHLC")) >= target, f"{polls} more OHLC polls")


def stop(daemon: Daemon) -> str:
    """SIGTERM; the daemon must stop cleanly (exit 0). Its stdout (the summaries)."""
    daemon.signal(signal.SIGTERM)
    code, out = daemon.finish()
    assert code == 0, daemon.stderr
    return out


def db_cursor(data_dir: Path, link: str = LINK) -> str | None:
    """The link's last processed candle, read from the database while its daemon runs (read-only:
    the daemon holds the data dir's lock)."""
    uri = f"file:{data_dir / f'{STEM}.sqlite3'}?mode=ro"
    try:
        with closing_connection(sqlite3.connect(uri, uri=True)) as db:
            row = db.execute("SELECT last_candle FROM cursors WHERE link = ? AND symbol = 'BTC/USD'",
                             (link,)).fetchone()
    except sqlite3.OperationalError:  # not created yet
        return None
    return None if row is None else row[0]


@contextmanager
def closing_connection(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    try:
        yield connection
    finally:
        connection.close()


@contextmanager
def state_of(data_dir: Path) -> Iterator[StateStore]:
    """The operation's state store, opened after its daemon has exited."""
    store = StateStore.open(data_dir, STEM)
    try:
        yield store
    finally:
        store.close()


def account_of(store: StateStore, link: str = LINK) -> AccountState:
    account = store.load_account(link)
    assert account is not None, f"no account for {link}"
    return account


def assert_books_match_the_exchange(data_dir: Path, fake: FakeKraken, links: tuple[str, ...] = (LINK,)) -> None:
    """Together, the links' accounts hold what the exchange account holds; every exchange order is
    one fill in the database, and no order is left unsettled."""
    with state_of(data_dir) as store:
        accounts = {link: account_of(store, link) for link in links}
        fills = [fill for link in links for fill in store.fills(link)]
        unsettled = [order for link in links for order in store.open_orders(link)]
    assert unsettled == []
    assert len(fills) == len(fake.orders) == len(fake.received("private/AddOrder"))
    assert sorted(str(fill.exchange_order_id) for fill in fills) == sorted(fake.orders)
    btc = sum(a.positions["BTC/USD"].qty for a in accounts.values() if "BTC/USD" in a.positions)
    assert btc == pytest.approx(fake.balances["XXBT"], abs=1e-12)
    spent = sum(a.starting_capital - a.cash for a in accounts.values())
    assert 10_000 - spent == pytest.approx(fake.balances["ZUSD"], abs=1e-6)
    assert sum(a.trades for a in accounts.values()) == len(fills)


def assert_no_traceback(*daemons: Daemon) -> None:
    for daemon in daemons:
        assert "Traceback" not in daemon.stderr, daemon.stderr


# --- kill -9 and restart ----------------------------------------------------------------------------


def test_kill_9_then_restart_trades_on_without_the_missed_candles_and_books_match_the_exchange(
        tmp_path, fake, daemons):
    operation, data_dir = live_operation(tmp_path, fake), tmp_path / "state"
    minutes = Minutes(fake, 4)  # rows 0-2 closed, row 3 forming

    first = daemons(operation, data_dir)
    wait_for(first, "order_filled")  # a fresh start trades the latest closed candle (row 2)
    minutes.add()  # row 3 closes
    filled = wait_for(first, "order_filled", count=2)
    wait_until(lambda: db_cursor(data_dir) == minutes.time(3), "row 3 is the durable cursor")
    first.signal(signal.SIGKILL)
    assert first.finish()[0] == -signal.SIGKILL
    assert [f["candle_time"] for f in filled] == [minutes.time(2), minutes.time(3)]

    minutes.add(3)  # rows 4-6 close while the daemon is down; row 7 forms
    second = daemons(operation, data_dir)
    (restored,) = wait_for(second, "account_restored")
    assert (restored["strategy_link"], restored["trades"]) == (LINK, 2)
    assert restored["positions"]["BTC/USD"] == pytest.approx(2 * BUY_USD / PRICE)
    (replayed,) = wait_for(second, "warmup_replayed")
    # Context workers only: rows 0-3 re-warm the indicators the workforce needs (up to the cursor),
    # rows 4-6 closed while the daemon was down.
    assert (replayed["candles"], replayed["resumed"]) == (7, True)
    minutes.add()  # row 7 closes: the first candle the restarted daemon may trade
    (fill,) = wait_for(second, "order_filled")
    assert fill["candle_time"] == minutes.time(7)
    let_it_poll(fake)
    stop(second)

    assert [e["candle_time"] for e in second.events("candle_closed")] == [minutes.time(7)]
    assert len(second.events("order_filled")) == 1
    (summary,) = second.events("strategy_summary")
    assert (summary["ticks_processed"], summary["trades"]) == (8, 3)  # 7 replayed + 1 traded; 3 fills in all
    for daemon in (first, second):
        assert not daemon.events("candle_already_processed")
        assert not daemon.events("order_outcome_unknown")
    assert_no_traceback(first, second)

    assert_books_match_the_exchange(data_dir, fake)
    with state_of(data_dir) as store:
        fills, cursors = store.fills(LINK), store.cursors(LINK)
    assert [f.candle_time for f in fills] == [minutes.moment(i) for i in (2, 3, 7)]  # each candle once
    assert cursors == {"BTC/USD": minutes.moment(7)}
    assert {r.params["cl_ord_id"][:8] for r in fake.received("private/AddOrder")} == {link_tag(LINK)}


def test_a_restart_before_the_next_candle_closes_trades_that_candle_once_it_closes(tmp_path, fake, daemons):
    """The usual restart (a deploy within one candle): nothing closed while the daemon was down, so
    only candles up to the cursor are replayed (to re-warm the indicators), and the first candle to
    close after the restart is traded."""
    operation, data_dir = live_operation(tmp_path, fake), tmp_path / "state"
    minutes = Minutes(fake, 4)
    first = daemons(operation, data_dir)
    wait_for(first, "order_filled")
    stop(first)

    second = daemons(operation, data_dir)
    wait_for(second, "resuming_after_restart")
    wait_for(second, "environment_feed_started")
    let_it_poll(fake)  # it has seen that no candle closed since row 2
    minutes.add()  # row 3 closes while the restarted daemon runs
    (fill,) = wait_for(second, "order_filled")
    let_it_poll(fake)
    stop(second)

    assert fill["candle_time"] == minutes.time(3)
    (replayed,) = second.events("warmup_replayed")
    assert (replayed["candles"], replayed["resumed"]) == (3, True)  # rows 0-2, none after the cursor
    assert not second.events("candle_already_processed")
    assert [e["candle_time"] for e in second.events("candle_closed")] == [minutes.time(3)]
    assert_books_match_the_exchange(data_dir, fake)
    with state_of(data_dir) as store:
        assert [f.candle_time for f in store.fills(LINK)] == [minutes.moment(2), minutes.moment(3)]


def test_kill_9_while_an_order_is_in_flight_books_it_once_and_never_trades_its_candle_again(
        tmp_path, fake, daemons):
    operation, data_dir = live_operation(tmp_path, fake, order_wait_seconds=30), tmp_path / "state"
    fake.open_polls = 10_000  # the order is placed but stays open: the daemon keeps polling it
    minutes = Minutes(fake, 4)  # the first tick ever trades row 2

    first = daemons(operation, data_dir)
    wait_until(lambda: len(fake.received("private/QueryOrders")) >= 2, "the placed order is being polled")
    first.signal(signal.SIGKILL)
    first.finish()
    (placed,) = fake.orders_of()
    with state_of(data_dir) as store:
        journaled = store.order(placed["cl_ord_id"])
        assert journaled is not None and journaled.state is OrderStatus.PENDING  # written before it was sent
        assert store.fills(LINK) == []

    placed["_open_polls"] = 0  # meanwhile the exchange filled it
    fake.open_polls = 0
    second = daemons(operation, data_dir)  # restarted at once: row 2 is still the latest closed candle
    (settled,) = wait_for(second, "order_settled")
    assert (settled["client_order_id"], settled["status"]) == (placed["cl_ord_id"], "filled")
    wait_for(second, "environment_feed_started")
    let_it_poll(fake)
    # Row 2 was traded: its order is booked (on row 2, as its own fill), never placed again.
    (booked,) = second.events("order_filled")
    assert (booked["candle_time"], booked["order_id"]) == (minutes.time(2), next(iter(fake.orders)))
    assert len(fake.received("private/AddOrder")) == 1
    minutes.add()  # row 3 closes
    (_, fill) = wait_for(second, "order_filled", count=2)
    assert fill["candle_time"] == minutes.time(3)
    let_it_poll(fake)
    stop(second)

    assert len(fake.received("private/AddOrder")) == 2  # the in-flight order was never sent again
    with state_of(data_dir) as store:
        fills = store.fills(LINK)
    assert [f.client_order_id == placed["cl_ord_id"] for f in fills] == [True, False]  # settled, then row 3
    assert fills[1].candle_time == minutes.moment(3)
    assert_books_match_the_exchange(data_dir, fake)
    assert_no_traceback(first, second)


# --- one daemon per data dir, and only a sound database --------------------------------------------


def test_a_second_daemon_on_the_same_data_dir_exits_2_naming_the_lock(tmp_path, fake, daemons):
    operation, data_dir = live_operation(tmp_path, fake), tmp_path / "state"
    minutes = Minutes(fake, 4)
    first = daemons(operation, data_dir)
    wait_for(first, "order_filled")

    second = daemons(operation, data_dir, module=REAL_CLI)
    code, stdout = second.finish()

    lock = data_dir / f"{STEM}.lock"
    assert code == 2, second.stderr
    assert (f"run-operation: config error: {lock}: another run-operation (pid {first.process.pid}) "
            "is using this data dir") in second.stderr
    assert not second.events("config_error")  # the one line above is the report (the event: --log-dir only)
    assert not second.events("state_store_opened") and "ticks processed" not in stdout
    assert_no_traceback(second)

    assert first.process.poll() is None  # untouched: it keeps trading
    minutes.add()
    wait_for(first, "order_filled", count=2)
    stop(first)
    assert len(fake.received("private/AddOrder")) == 2
    assert_books_match_the_exchange(data_dir, fake)


def test_a_database_deleted_while_running_stops_trading_and_the_next_start_needs_new_state(tmp_path, fake,
                                                                                         daemons):
    operation, data_dir = live_operation(tmp_path, fake), tmp_path / "state"
    database = data_dir / f"{STEM}.sqlite3"
    minutes = Minutes(fake, 4)
    first = daemons(operation, data_dir)
    wait_for(first, "order_filled")
    for path in data_dir.glob(f"{STEM}.sqlite3*"):  # with its -wal and -shm files
        path.unlink()
    minutes.add()  # the next candle: its write finds the database gone
    (lost,) = wait_for(first, "state_database_lost")
    assert (lost["path"], lost["reason"]) == (str(database), "deleted")
    (failed,) = wait_for(first, "strategy_run_failed")
    assert "was deleted while running" in failed["error"] and "--new-state" in failed["error"]
    assert len(fake.received("private/AddOrder")) == 1  # no order without its intent journaled
    first.signal(signal.SIGTERM)
    assert first.finish()[0] == 1

    second = daemons(operation, data_dir, module=REAL_CLI)
    code, _ = second.finish()
    assert code == 2, second.stderr
    assert f"run-operation: config error: {database}: the database is missing" in second.stderr
    assert "--new-state" in second.stderr and not database.exists()
    assert_no_traceback(second)

    third = Daemon([str(operation), "--data-dir", str(data_dir), "--new-state"], module=FAST_CLI, env=CREDENTIALS)
    try:
        wait_for(third, "warmup_replayed")
        # Fresh accounts, as asked; the exchange still holds the first daemon's BTC, which the
        # start-up reconciliation reports (and pauses the buys) rather than ignores.
        wait_for(third, "reconciliation_mismatch")
        stop(third)
    finally:
        if third.process.poll() is None:
            third.process.kill()
    with state_of(data_dir) as store:
        assert account_of(store).trades == 0 and store.fills(LINK) == []


def _foreign_database(path: Path) -> None:
    with closing_connection(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
        db.execute("INSERT INTO notes VALUES ('someone else''s database')")
        db.commit()


def _truncated_state(path: Path) -> None:
    """A real opdaemon database cut short (a bad copy, a full disk)."""
    with state_of(path.parent):
        pass
    path.write_bytes(path.read_bytes()[:4096])
    (path.parent / f"{STEM}.lock").unlink()


def _schema_version_0(path: Path) -> None:
    """A real opdaemon database whose schema version says 0 (no version ever had that number)."""
    with state_of(path.parent):
        pass
    with closing_connection(sqlite3.connect(path)) as db:
        db.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
        db.commit()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda path: path.write_bytes(b"\x00\x17garbage, not a database\n" * 400), "file is not a database"),
        (_truncated_state, "database disk image is malformed"),
        (_foreign_database, "not an opdaemon database (it has no meta table)"),
        (_schema_version_0, "the database is damaged (schema version '0')"),
    ],
    ids=["garbage", "truncated", "foreign_sqlite", "schema_version_0"],
)
def test_a_damaged_database_exits_2_and_is_left_untouched(tmp_path, fake, daemons, damage, reason):
    operation, data_dir = live_operation(tmp_path, fake), tmp_path / "state"
    Minutes(fake, 4)
    data_dir.mkdir()
    database = data_dir / f"{STEM}.sqlite3"
    damage(database)
    before = database.read_bytes()

    daemon = daemons(operation, data_dir, module=REAL_CLI)
    code, stdout = daemon.finish()

    assert code == 2, daemon.stderr
    assert f"run-operation: config error: {database}: " in daemon.stderr
    assert reason in daemon.stderr and "it was left untouched" in daemon.stderr
    assert database.read_bytes() == before
    assert not fake.requests  # refused before anything reached the exchange
    assert "ticks processed" not in stdout
    assert_no_traceback(daemon)


# --- SIGTERM while an order is still open -------------------------------------------------------------


def test_sigterm_during_a_slow_fill_exits_in_time_and_the_restart_settles_the_order_before_trading(
        tmp_path, fake, daemons):
    shutdown_timeout = 2.0
    operation = live_operation(tmp_path, fake, order_wait_seconds=60,
                               operation_settings={"shutdown_timeout_seconds": shutdown_timeout})
    data_dir = tmp_path / "state"
    fake.open_polls = 10_000  # the exchange works the order for longer than anyone waits
    minutes = Minutes(fake, 4)

    first = daemons(operation, data_dir)
    wait_until(lambda: len(fake.received("private/QueryOrders")) >= 2, "the placed order is being polled")
    sent = first.signal(signal.SIGTERM)
    code, _ = first.finish(timeout=shutdown_timeout + 30)
    took = time.monotonic() - sent

    assert code == 0, first.stderr
    # Within the shutdown bound, not the 60 s order wait (the margin is for a loaded machine).
    assert took < shutdown_timeout + 15, f"exited {took:.1f} s after SIGTERM"
    (placed_id,) = fake.orders
    placed = fake.orders[placed_id]
    (unknown,) = first.events("order_outcome_unknown")
    assert (unknown["client_order_id"], unknown["order_id"]) == (placed["cl_ord_id"], placed_id)
    assert not first.events("order_filled") and not first.events("strategy_run_stalled")
    with state_of(data_dir) as store:
        journaled = store.order(placed["cl_ord_id"])
        assert journaled is not None
        assert (journaled.state, journaled.exchange_order_id) == (OrderStatus.UNKNOWN, placed_id)
        assert store.fills(LINK) == [] and account_of(store).cash == 10_000

    placed["_open_polls"] = 0  # the exchange has filled it since
    fake.open_polls = 0
    minutes.add()  # closes while the daemon is down
    second = daemons(operation, data_dir)
    (settled,) = wait_for(second, "order_settled")
    assert (settled["client_order_id"], settled["status"]) == (placed["cl_ord_id"], "filled")
    wait_for(second, "warmup_replayed")
    minutes.add()
    (settled_fill, fill) = wait_for(second, "order_filled", count=2)  # the settled order's, then a new one
    assert settled_fill["order_id"] == placed_id and fill["candle_time"] == minutes.time(-2)
    let_it_poll(fake)
    stop(second)

    order = [e["event"] for e in second.events()]
    assert order.index("order_settled") < order.index("operation_started")
    assert order.index("operation_started") < len(order) - 1 - order[::-1].index("order_filled")
    assert len(second.events("order_settled")) == 1 and len(second.events("order_filled")) == 2
    assert len(fake.received("private/AddOrder")) == 2  # settled by looking it up, never sent again
    with state_of(data_dir) as store:
        assert [f.client_order_id for f in store.fills(LINK)].count(placed["cl_ord_id"]) == 1
        settled_order = store.order(placed["cl_ord_id"])
    assert settled_order is not None and settled_order.state is OrderStatus.FILLED
    assert_books_match_the_exchange(data_dir, fake)
    assert_no_traceback(first, second)


def test_sigterm_while_an_order_lookup_waits_for_the_shared_client_journals_it_unknown_and_exits_0(
        tmp_path, fake, daemons):
    """The run's lookup waits for its turn on the account's client, held by the feed's slow candle
    request: a stop must not leave it waiting (it used to end stalled, exit 1)."""
    shutdown_timeout = 2.0
    operation = live_operation(tmp_path, fake, operation_settings={"shutdown_timeout_seconds": shutdown_timeout})
    fake.lose_next_add_order_reply()
    fake.hidden_lookups = 1_000  # the order is never found: the run keeps looking it up
    Minutes(fake, 4)
    daemon = daemons(operation, tmp_path / "state")
    wait_until(lambda: len(fake.received("private/AddOrder")) == 1, "the order is sent")
    ohlc_before = len(fake.received("public/OHLC"))
    fake.delay_replies("public/OHLC", 8.0, count=100)  # the feed's next poll holds the client 8 s
    wait_until(lambda: len(fake.received("public/OHLC")) > ohlc_before, "a slow candle request is under way")
    time.sleep(0.8)  # the run's next lookup is now waiting for the client
    sent = daemon.signal(signal.SIGTERM)
    code, _ = daemon.finish(timeout=shutdown_timeout + 10)

    assert code == 0, daemon.stderr
    # Not the 7 s the client is still held (below its 10 s request timeout, so it cannot be longer).
    assert time.monotonic() - sent < shutdown_timeout + 4
    assert not daemon.events("strategy_run_stalled")
    (placed,) = fake.orders.values()
    with state_of(tmp_path / "state") as store:
        journaled = store.order(placed["cl_ord_id"])
    assert journaled is not None and journaled.state is OrderStatus.UNKNOWN


def test_sigterm_before_the_first_live_candle_exits_0(tmp_path, fake, daemons):
    operation = live_operation(tmp_path, fake)
    Minutes(fake, 1)  # only the forming candle: nothing to hand out yet
    daemon = daemons(operation, tmp_path / "state")
    wait_for(daemon, "environment_feed_started")
    time.sleep(0.2)
    daemon.signal(signal.SIGTERM)
    code, _ = daemon.finish()

    assert code == 0, daemon.stderr
    assert not daemon.events("environment_feed_failed")


# --- credentials never shown ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("key", "secret"), [(WRONG_KEY, TEST_API_SECRET), (TEST_API_KEY, WRONG_SECRET)],
                         ids=["unknown_key", "wrong_secret"])
def test_a_refused_key_the_exchange_echoes_exits_2_without_showing_key_or_secret(
        tmp_path, fake, daemons, key, secret):
    fake.echo_key_in_errors = True  # its error text quotes the API-Key header it received
    operation, data_dir = live_operation(tmp_path, fake), tmp_path / "state"
    Minutes(fake, 4)

    daemon = daemons(operation, data_dir, env={KEY_ENV: key, SECRET_ENV: secret}, module=REAL_CLI)
    code, stdout = daemon.finish()

    assert code == 2, daemon.stderr
    assert "kraken rejected the API key" in daemon.stderr and "(API-Key: ***)" in daemon.stderr
    for text in (stdout, daemon.stderr):
        assert key not in text and secret not in text
    assert len(fake.received("private/BalanceEx")) == 1  # the echo did happen, and once
    assert not fake.received("private/AddOrder")
    assert_no_traceback(daemon)


def test_a_key_refused_while_trading_fails_the_run_unshown_and_a_restart_with_a_new_key_trades_on(
        tmp_path, fake, daemons):
    fake.echo_key_in_errors = True
    operation, data_dir = live_operation(tmp_path, fake), tmp_path / "state"
    minutes = Minutes(fake, 4)
    first = daemons(operation, data_dir)
    wait_for(first, "order_filled")

    fake.api_key = NEW_KEY  # the old key is revoked on the exchange
    minutes.add()
    wait_for(first, "strategy_run_failed")
    minutes.add()  # the feed ends when it finds, at the next candle, that no run takes ticks
    code, stdout = first.finish()

    assert code == 1, first.stderr  # a run failed (the README: a key refused while running)
    (failed,) = first.events("strategy_run_failed")
    assert "EAPI:Invalid key" in failed["error"] and "(API-Key: ***)" in failed["error"]
    for text in (stdout, first.stderr):
        assert TEST_API_KEY not in text and TEST_API_SECRET not in text
    assert_no_traceback(first)
    (refused,) = fake.received("private/AddOrder")[1:]  # executed nothing: the key was refused
    assert len(fake.orders) == 1
    with state_of(data_dir) as store:
        order = store.order(refused.params["cl_ord_id"])
        assert order is not None and order.state is OrderStatus.REJECTED
        assert TEST_API_KEY not in (order.detail or "")
    assert TEST_API_KEY.encode() not in (data_dir / f"{STEM}.sqlite3").read_bytes()

    second = daemons(operation, data_dir, env={KEY_ENV: NEW_KEY, SECRET_ENV: TEST_API_SECRET})
    wait_for(second, "warmup_replayed")  # its first poll is done: the next candle to close is traded
    minutes.add()
    (fill,) = wait_for(second, "order_filled")  # nothing is left unsettled to block its buys
    let_it_poll(fake)
    stop(second)

    assert fill["candle_time"] == minutes.time(-2)
    assert not second.events("order_skipped") and not second.events("settling_unknown_orders")
    with state_of(data_dir) as store:
        assert store.open_orders(LINK) == [] and len(store.fills(LINK)) == len(fake.orders) == 2
        account = account_of(store)
    assert account.positions["BTC/USD"].qty == pytest.approx(fake.balances["XXBT"], abs=1e-12)
    assert account.cash == pytest.approx(fake.balances["ZUSD"], abs=1e-6)
    assert_no_traceback(second)


# --- reconciliation at start -----------------------------------------------------------------------


def test_a_link_holding_more_than_the_exchange_is_paused_while_another_link_on_the_key_trades(
        tmp_path, fake, daemons):
    data_dir = tmp_path / "state"
    minutes = Minutes(fake, 4)
    first = daemons(live_operation(tmp_path, fake, blueprints=("a",)), data_dir)
    wait_for(first, "order_filled")
    stop(first)
    held = fake.balances["XXBT"]
    assert held == pytest.approx(BUY_USD / PRICE)

    fake.balances["XXBT"] = 0.0  # someone withdrew the BTC by hand
    fake.balances["ZUSD"] += 10_000  # and paid in the budget of a second link on the same key
    operation = live_operation(tmp_path, fake, blueprints=("a", "b"))
    minutes.add()
    orders_before = len(fake.orders)
    second = daemons(operation, data_dir)
    (mismatch,) = wait_for(second, "reconciliation_mismatch")
    assert (mismatch["currency"], mismatch["exchange_balance"]) == ("BTC", 0.0)
    assert mismatch["strategies_hold"] == {"a@live": pytest.approx(held)}
    wait_for(second, "warmup_replayed")
    minutes.add()  # a candle both links would buy on
    (fill,) = wait_for(second, "order_filled")
    (skipped,) = wait_for(second, "order_skipped")
    let_it_poll(fake)
    out = stop(second)

    assert fill["strategy_link"] == "b@live" and fill["candle_time"] == minutes.time(-2)
    assert skipped["strategy_link"] == "a@live" and f"hold {held:g} BTC" in skipped["reason"]
    a_summary = out[out.index("== a@live"):out.index("== b@live")]
    assert "orders not filled: rejected 0   unknown 0   skipped 1" in a_summary
    assert "orders not filled" not in out[out.index("== b@live"):]
    summaries = {e["strategy_link"]: e for e in second.events("strategy_summary")}
    assert (summaries["a@live"]["orders_skipped"], summaries["b@live"]["orders_skipped"]) == (1, 0)
    assert [e["strategy_link"] for e in second.events("order_filled")] == ["b@live"]
    new_orders = list(fake.orders.values())[orders_before:]
    assert [o["cl_ord_id"][:8] for o in new_orders] == [link_tag("b@live")]
    with state_of(data_dir) as store:
        a, b = account_of(store, "a@live"), account_of(store, "b@live")
        assert (a.trades, b.trades) == (1, 1)
        assert a.positions["BTC/USD"].qty == pytest.approx(held)  # the books keep what it bought
        assert store.cursors("a@live") == store.cursors("b@live") == {"BTC/USD": minutes.moment(-2)}
    assert_no_traceback(first, second)
