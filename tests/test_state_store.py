"""The SQLite state store on real files: round trips, one daemon per data dir, refusals that
leave the file untouched."""

import fcntl
import hashlib
import sqlite3
from datetime import UTC, datetime

import pytest

from backend.dtos import AccountState, OrderDTO, OrderSide, OrderStatus, OrderType, PositionState
from backend.errors import ConfigError, StateLostError
from backend.interfaces.order_gateway import OrderRequest
from backend.market_data import RawTick
from backend.portfolio import Ledger, SimulatedGateway, StrategyAccount
from backend.portfolio.fill_rules import FillRules
from backend.state import FillRecord, LinkControls, OrderRecord, StateStore, StoreJournal
from backend.state.store import LINK_CONTROLS_TABLE, MIGRATIONS, SCHEMA_3, SCHEMA_VERSION
from tests.helpers import tick

CANDLE = datetime(2024, 5, 1, 12, tzinfo=UTC)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store(tmp_path):
    opened = StateStore.open(tmp_path, "op")
    yield opened
    opened.close()


def intent(client_order_id: str = "c1", link: str = "a@live") -> OrderRecord:
    return OrderRecord(client_order_id, link, "BTC/USD", "buy", 0.01, 50_000.0, "test", OrderStatus.PENDING)


def test_an_account_and_its_cursor_survive_a_reopen(tmp_path):
    account = AccountState(10_000, cash=4_999.5, fees_paid=0.5, peak_equity=10_200, max_drawdown_pct=1.5,
                           trades=3, positions={"BTC/USD": PositionState(0.1, 50_000.0)})
    first = StateStore.open(tmp_path, "op")
    first.save_account("a@live", account, cursor=("BTC/USD", CANDLE))
    first.close()

    second = StateStore.open(tmp_path, "op")
    assert second.load_account("a@live") == account
    assert second.cursors("a@live") == {"BTC/USD": CANDLE}
    assert second.load_account("b@live") is None and second.cursors("b@live") == {}
    second.close()


def test_a_fill_its_account_and_its_order_state_are_written_together(store):
    store.record_intent(intent("c1"))
    store.record_intent(intent("c2"))
    assert [o.client_order_id for o in store.open_orders("a@live")] == ["c1", "c2"]

    account = AccountState(10_000, cash=9_498.7, fees_paid=1.3, trades=1,
                           positions={"BTC/USD": PositionState(0.01, 50_000.0)})
    fill = FillRecord("c1", "BTC/USD", "buy", 0.01, 50_000.0, 1.3, CANDLE, "OX-1")
    store.record_fill("a@live", fill, account, OrderStatus.FILLED)
    store.update_order("c2", OrderStatus.UNKNOWN, detail="reply lost")

    assert store.fills("a@live") == [fill]
    assert store.load_account("a@live") == account
    assert store.order("c1").state is OrderStatus.FILLED and store.order("c1").exchange_order_id == "OX-1"
    (unknown,) = store.open_orders("a@live")
    assert (unknown.client_order_id, unknown.state, unknown.detail) == ("c2", OrderStatus.UNKNOWN, "reply lost")


def test_a_second_daemon_on_the_same_data_dir_is_refused(store, tmp_path):
    with pytest.raises(ConfigError, match=r"another run-operation \(pid \d+\) is using this data dir") as raised:
        StateStore.open(tmp_path, "op")
    assert raised.value.file == str(tmp_path / "op.lock")
    StateStore.open(tmp_path, "other_operation").close()  # another operation's database is free


def test_the_lock_goes_with_the_store(tmp_path):
    StateStore.open(tmp_path, "op").close()
    StateStore.open(tmp_path, "op").close()


def test_a_database_from_a_newer_version_is_refused_untouched(tmp_path):
    StateStore.open(tmp_path, "op").close()
    path = tmp_path / "op.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    connection.close()
    before = digest(path)
    with pytest.raises(ConfigError, match=r"newer opdaemon \(schema version 7; this one knows versions up to 5\)"):
        StateStore.open(tmp_path, "op")
    assert digest(path) == before


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 4000,
                                     b""], ids=["text", "damaged_header", "empty"])
def test_a_corrupt_database_is_refused_untouched(tmp_path, content):
    path = tmp_path / "op.sqlite3"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        StateStore.open(tmp_path, "op")
    assert raised.value.file == str(path) and "left untouched" in raised.value.reason
    assert path.read_bytes() == content
    with (tmp_path / "op.lock").open() as lock:  # the refused store released its lock
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_another_programs_database_is_refused_untouched(tmp_path):
    path = tmp_path / "op.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE trades (id INTEGER)")
    connection.close()
    before = digest(path)
    with pytest.raises(ConfigError, match="not an opdaemon database"):
        StateStore.open(tmp_path, "op")
    assert digest(path) == before


@pytest.mark.parametrize(("damage", "reason"), [
    ("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'", "schema version 'abc'"),
    ("UPDATE meta SET value = '0' WHERE key = 'schema_version'", "schema version '0'"),
    ("DROP TABLE accounts", "no table accounts"),
], ids=["version_not_a_number", "version_0", "table_missing"])
def test_a_database_with_damaged_contents_is_refused_untouched(tmp_path, damage, reason):
    StateStore.open(tmp_path, "op").close()
    path = tmp_path / "op.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute(damage)
    connection.close()
    before = digest(path)
    with pytest.raises(ConfigError, match=f"damaged .{reason}.") as raised:
        StateStore.open(tmp_path, "op")
    assert raised.value.file == str(path) and digest(path) == before


def test_a_version_1_database_is_migrated_and_keeps_its_accounts(tmp_path):
    path = tmp_path / "op.sqlite3"
    version_1 = SCHEMA_3.replace(",\n    mode TEXT);", ");").replace(LINK_CONTROLS_TABLE, "")
    assert version_1 != SCHEMA_3 and "link_controls" not in version_1
    with sqlite3.connect(path) as connection:
        connection.executescript(f"{version_1} INSERT INTO meta VALUES ('schema_version', '1');")
        connection.execute("INSERT INTO accounts VALUES ('a@live', 10000, 9000, 1, 10000, 0, 1, 'then')")
    connection.close()

    store = StateStore.open(tmp_path, "op")
    assert store.load_account("a@live") == AccountState(10_000, 9_000, 1, 10_000, 0, 1, {})
    assert store.account_mode("a@live") is None
    store.set_account_mode("a@live", "paper")
    store.save_account("a@live", AccountState(10_000, 8_000))
    assert store.account_mode("a@live") == "paper"  # saving the account keeps its mode
    assert store.link_controls("a@live") == LinkControls()  # version 3: nothing asked of it yet
    store.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
    connection.close()


def test_a_version_2_database_gets_link_controls_and_keeps_its_accounts(tmp_path):
    path = tmp_path / "op.sqlite3"
    version_2 = SCHEMA_3.replace(LINK_CONTROLS_TABLE, "")
    with sqlite3.connect(path) as connection:
        connection.executescript(f"{version_2} INSERT INTO meta VALUES ('schema_version', '2');")
        connection.execute("INSERT INTO accounts VALUES ('a@live', 10000, 9000, 1, 10000, 0, 1, 'then', 'paper')")
    connection.close()

    store = StateStore.open(tmp_path, "op")
    assert store.load_account("a@live") == AccountState(10_000, 9_000, 1, 10_000, 0, 1, {})
    assert store.account_mode("a@live") == "paper"
    store.save_link_controls("a@live", LinkControls(paused=True, stopped=True))
    store.close()
    reopened = StateStore.open(tmp_path, "op")
    assert reopened.link_controls("a@live") == LinkControls(paused=True, stopped=True)
    assert reopened.link_controls("b@live") == LinkControls()
    reopened.save_link_controls("a@live", LinkControls(paused=True))
    assert reopened.link_controls("a@live") == LinkControls(paused=True, stopped=False)
    reopened.close()


def test_a_data_dir_that_is_a_file_is_named_as_such(tmp_path):
    (tmp_path / "var").write_text("")
    with pytest.raises(ConfigError, match="is a file, not a directory") as raised:
        StateStore.open(tmp_path / "var", "op")
    assert raised.value.key == "--data-dir"


def test_a_database_replaced_while_open_refuses_every_write_and_the_replacement_is_kept(store, tmp_path):
    store.save_account("a@live", AccountState(10_000, 10_000, 0, 10_000, 0, 0, {}))
    replacement = tmp_path / "copy.sqlite3"
    replacement.write_bytes(store.path.read_bytes())
    replacement.replace(store.path)  # another inode at the same path (a restore, a sync tool)
    before = digest(store.path)
    for write in (lambda: store.record_intent(intent()), lambda: store.save_link_controls("a@live", LinkControls()),
                  lambda: store.save_account("a@live", AccountState(10_000, 1, 0, 10_000, 0, 0, {}))):
        with pytest.raises(StateLostError, match="was replaced by another file while running"):
            write()
    assert digest(store.path) == before


def test_a_missing_database_after_an_earlier_run_is_created_only_with_new_state(tmp_path):
    StateStore.open(tmp_path, "op").close()
    (tmp_path / "op.sqlite3").unlink()
    with pytest.raises(ConfigError, match="--new-state"):
        StateStore.open(tmp_path, "op")
    assert not (tmp_path / "op.sqlite3").exists()
    StateStore.open(tmp_path, "op", new_state=True).close()
    assert (tmp_path / "op.sqlite3").exists()
    StateStore.open(tmp_path, "other").close()  # a first start needs nothing


def test_a_version_3_database_gets_resting_orders_and_keeps_its_orders_and_fills(tmp_path):
    """Schema 4: an intended order becomes pending, a submitted one open, and what is booked of each
    order is the sum of its fills; the order history and protections start empty."""
    path = tmp_path / "op.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.executescript(f"{SCHEMA_3} INSERT INTO meta VALUES ('schema_version', '3');")
        for order_id, state in (("c1", "filled"), ("c2", "intended"), ("c3", "submitted")):
            connection.execute("INSERT INTO orders VALUES (?, 'a@live', 'BTC/USD', 'buy', 0.02, 50000, 't', ?, "
                               "NULL, NULL, ?, 'then')", (order_id, state, CANDLE.isoformat()))
        for quantity, price in ((0.01, 50_000.0), (0.01, 51_000.0)):
            connection.execute("INSERT INTO fills (client_order_id, link, asset, side, quantity, price, fee, "
                               "candle_time, exchange_order_id, recorded_at) VALUES ('c1', 'a@live', 'BTC/USD', "
                               "'buy', ?, ?, 1.0, ?, 'OX-1', 'then')", (quantity, price, CANDLE.isoformat()))
    connection.close()

    store = StateStore.open(tmp_path, "op")
    filled = store.order("c1")
    assert filled is not None and filled.state is OrderStatus.FILLED
    assert (filled.filled_quantity, filled.average_price, filled.fee) == (0.02, pytest.approx(50_500.0), 2.0)
    assert {o.client_order_id: o.state for o in store.open_orders("a@live")} == {
        "c2": OrderStatus.PENDING, "c3": OrderStatus.OPEN}
    assert store.order_events("a@live") == [] and store.protections("a@live") == {}
    store.save_protection("a@live", "BTC/USD", (49_000.0, None))
    assert store.protections("a@live") == {"BTC/USD": (49_000.0, None)}
    store.close()


def test_a_version_4_database_gets_trailing_offsets_and_keeps_its_orders(tmp_path):
    """Schema 5: the orders table gains trailing_offset and trailing_offset_pct (none on the orders
    it had), and a trailing stop's offset goes through the journal and back."""
    path = tmp_path / "op.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.executescript(f"{SCHEMA_3} {MIGRATIONS[4]} INSERT INTO meta VALUES ('schema_version', '4');")
        connection.execute("INSERT INTO orders (client_order_id, link, asset, side, quantity, reference_price, reason, "
                           "state, created_at, updated_at, order_type, trigger_price) VALUES ('c1', 'a@live', "
                           "'BTC/USD', 'sell', 0.02, 50000, 't', 'open', ?, 'then', 'stop_loss', 49000)",
                           (CANDLE.isoformat(),))
    connection.close()

    store = StateStore.open(tmp_path, "op")
    kept = store.order("c1")
    assert kept is not None and (kept.order_type, kept.trigger_price, kept.state) == ("stop_loss", 49_000.0,
                                                                                      OrderStatus.OPEN)
    assert (kept.trailing_offset, kept.trailing_offset_pct) == (None, None)
    journal = StoreJournal(store, "a@live")
    for client_order_id, offsets in (("c2", {"trailing_offset": 500.0}), ("c3", {"trailing_offset_pct": 2.5})):
        journal.record_intent(OrderRequest(client_order_id, "BTC/USD", OrderSide.SELL, 0.01, 50_000.0,
                                           order_type=OrderType.TRAILING_STOP, placed_at=CANDLE, **offsets))
    reread = {order.request.client_order_id: order.request for order in journal.open_orders()}
    assert (reread["c2"].order_type, reread["c2"].trailing_offset, reread["c2"].trailing_offset_pct) == (
        OrderType.TRAILING_STOP, 500.0, None)
    assert (reread["c3"].trailing_offset, reread["c3"].trailing_offset_pct) == (None, 2.5)
    store.close()


def test_a_position_of_zero_quantity_is_neither_saved_nor_loaded_as_held(tmp_path):
    store = StateStore.open(tmp_path, "op")
    account = AccountState(10_000, 9_000, positions={"BTC/USD": PositionState(0.0, 50_000.0),
                                                       "ETH/USD": PositionState(0.5, 2_000.0)})
    store.save_account("a@live", account)
    loaded = store.load_account("a@live")
    assert loaded is not None and loaded.positions == {"ETH/USD": PositionState(0.5, 2_000.0)}
    store.close()


def test_the_peak_equity_and_drawdown_recorded_on_a_traded_candle_survive_a_restart(tmp_path):
    """A paper account journaled candle by candle: the peak (11,000 at 120) and the deepest
    drawdown (to 9,950 at 99, on the last candle before the stop) come back with the account, so
    a restart neither forgets a drawdown nor measures the next one from a lower peak."""
    def paper_account(store: StateStore) -> StrategyAccount:  # as the daemon builds it on each start
        return StrategyAccount(Ledger(10_000, store.load_account("p@paper")), SimulatedGateway(FillRules(0.0, 0.0)),
                               StoreJournal(store, "p@paper"))

    def trade(account: StrategyAccount, candle: RawTick) -> None:
        account.open_tick(candle, trading=True)
        account.close_tick(candle.symbol, candle.close, candle.timestamp, trading=True)

    store = StateStore.open(tmp_path, "op")
    first = paper_account(store)
    first.open_tick(tick(0, 100.0), trading=True)
    first.submit(OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=50, reference_price=100.0, reason="test"),
                 tick(0, 100.0).timestamp)
    first.close_tick("BTC/USD", 100.0, tick(0, 100.0).timestamp, trading=True)
    trade(first, tick(1, 120.0))
    trade(first, tick(2, 99.0))
    store.close()

    reopened = StateStore.open(tmp_path, "op")
    deepest = (1 - 9_950 / 11_000) * 100
    restored = reopened.load_account("p@paper")
    assert restored is not None and restored.peak_equity == pytest.approx(11_000)
    assert restored.max_drawdown_pct == pytest.approx(deepest)
    restarted = paper_account(reopened)
    trade(restarted, tick(3, 110.0))
    snapshot = restarted.snapshot()
    assert (snapshot.equity, snapshot.peak_equity) == (pytest.approx(10_500), pytest.approx(11_000))
    assert snapshot.max_drawdown_pct == pytest.approx(deepest) and snapshot.drawdown_pct == pytest.approx(
        (1 - 10_500 / 11_000) * 100)
    reopened.close()
