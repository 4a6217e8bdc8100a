"""The operation's durable state: one SQLite database per operation in the data dir.

Invariants: one process at a time uses a data dir's database (an exclusive lock on a file next to
it, held for the process's lifetime); a database with an unknown, newer schema version or one that
cannot be read is refused and left untouched; every method commits before it returns, so what a
caller was told is written survives kill -9; an order's intent is written before it is sent; an
older schema is migrated by the explicit steps in MIGRATIONS, never by rewriting the database.

A database that vanished is never silently replaced: while running, every write first checks that
the file at `path` is still the one opened (same device and inode) and otherwise raises
StateLostError (logged once as `state_database_lost`), so the link writing fails and stops
trading instead of writing into a file nobody will read again; at start, a data dir whose lock
file shows an earlier run but whose database is missing is a config error unless `new_state`
(`--new-state`) asks for fresh accounts.
"""

import fcntl
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from backend.dtos import AccountState, OrderStatus, PositionState
from backend.errors import ConfigError, StateLostError

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 5
# What an operator asked of a link through the control API (paused, stopped), kept across restarts.
LINK_CONTROLS_TABLE = """
CREATE TABLE link_controls (
    link TEXT PRIMARY KEY, paused INTEGER NOT NULL, stopped INTEGER NOT NULL, updated_at TEXT NOT NULL);
"""
# Every state an order went through, with what was filled of it then (orders.csv).
ORDER_EVENTS_TABLE = """
CREATE TABLE order_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, client_order_id TEXT NOT NULL, link TEXT NOT NULL, state TEXT NOT NULL,
    filled_quantity REAL NOT NULL, average_price REAL NOT NULL, fee REAL NOT NULL, detail TEXT, at TEXT NOT NULL);
CREATE INDEX order_events_by_link ON order_events (link, id);
"""
# The stop (and take-profit) asked for a link's position in an asset, kept across restarts.
PROTECTIONS_TABLE = """
CREATE TABLE protections (
    link TEXT NOT NULL, asset TEXT NOT NULL, stop_price REAL NOT NULL, take_profit_price REAL,
    updated_at TEXT NOT NULL, PRIMARY KEY (link, asset));
"""
# Resting orders: the order's type and prices, and what is booked of it (cumulative), per order.
ORDERS_V4 = "".join(f"ALTER TABLE orders ADD COLUMN {column};" for column in (
    "order_type TEXT NOT NULL DEFAULT 'market'", "limit_price REAL", "trigger_price REAL",
    "time_in_force TEXT NOT NULL DEFAULT 'gtc'", "expires_at TEXT", "post_only INTEGER NOT NULL DEFAULT 0",
    "protective INTEGER NOT NULL DEFAULT 0", "placed_at TEXT", "filled_quantity REAL NOT NULL DEFAULT 0",
    "average_price REAL NOT NULL DEFAULT 0", "fee REAL NOT NULL DEFAULT 0")) + """
UPDATE orders SET state = 'pending' WHERE state = 'intended';
UPDATE orders SET state = 'open' WHERE state = 'submitted';
UPDATE orders SET
    filled_quantity = COALESCE((SELECT SUM(quantity) FROM fills
                                WHERE fills.client_order_id = orders.client_order_id), 0),
    average_price = COALESCE((SELECT SUM(quantity * price) / SUM(quantity) FROM fills
                              WHERE fills.client_order_id = orders.client_order_id), 0),
    fee = COALESCE((SELECT SUM(fee) FROM fills WHERE fills.client_order_id = orders.client_order_id), 0);
"""
# Trailing stops: the distance from the peak (trough) in quote, or in percent of it.
ORDERS_V5 = "".join(f"ALTER TABLE orders ADD COLUMN {column} REAL;" for column in ("trailing_offset",
                                                                                "trailing_offset_pct"))
# Version N's changes to version N-1, applied in order to an older database when it is opened.
MIGRATIONS = {
    2: "ALTER TABLE accounts ADD COLUMN mode TEXT;",  # paper or live: a paper account never trades live
    3: LINK_CONTROLS_TABLE,
    4: ORDERS_V4 + ORDER_EVENTS_TABLE + PROTECTIONS_TABLE,
    5: ORDERS_V5,
}
TABLES_OF_VERSION: dict[int, tuple[str, ...]] = {1: ("meta", "accounts", "positions", "orders", "fills", "cursors")}
TABLES_OF_VERSION[2] = TABLES_OF_VERSION[1]
TABLES_OF_VERSION[3] = (*TABLES_OF_VERSION[2], "link_controls")
TABLES_OF_VERSION[4] = (*TABLES_OF_VERSION[3], "order_events", "protections")
TABLES_OF_VERSION[5] = TABLES_OF_VERSION[4]
# The schema as of version 3; a new database is that plus the later migrations, so every new
# database runs them (a migration that breaks cannot go unnoticed).
SCHEMA_3 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (
    link TEXT PRIMARY KEY, starting_capital REAL NOT NULL, cash REAL NOT NULL, fees_paid REAL NOT NULL,
    peak_equity REAL NOT NULL, max_drawdown_pct REAL NOT NULL, trades INTEGER NOT NULL, updated_at TEXT NOT NULL,
    mode TEXT);
CREATE TABLE positions (
    link TEXT NOT NULL, asset TEXT NOT NULL, qty REAL NOT NULL, avg_entry_price REAL NOT NULL,
    PRIMARY KEY (link, asset));
CREATE TABLE orders (
    client_order_id TEXT PRIMARY KEY, link TEXT NOT NULL, asset TEXT NOT NULL, side TEXT NOT NULL,
    quantity REAL NOT NULL, reference_price REAL NOT NULL, reason TEXT NOT NULL, state TEXT NOT NULL,
    exchange_order_id TEXT, detail TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX orders_by_link_state ON orders (link, state);
CREATE TABLE fills (
    id INTEGER PRIMARY KEY AUTOINCREMENT, client_order_id TEXT NOT NULL, link TEXT NOT NULL,
    asset TEXT NOT NULL, side TEXT NOT NULL, quantity REAL NOT NULL, price REAL NOT NULL, fee REAL NOT NULL,
    candle_time TEXT NOT NULL, exchange_order_id TEXT, recorded_at TEXT NOT NULL);
CREATE TABLE cursors (
    link TEXT NOT NULL, symbol TEXT NOT NULL, last_candle TEXT NOT NULL, PRIMARY KEY (link, symbol));
""" + LINK_CONTROLS_TABLE


@dataclass(frozen=True)
class OrderRecord:
    client_order_id: str
    link: str
    asset: str
    side: str
    quantity: float
    reference_price: float
    reason: str
    state: OrderStatus
    exchange_order_id: str | None = None
    detail: str | None = None
    created_at: datetime | None = None  # when the intent was journaled (set by the store)
    order_type: str = "market"
    limit_price: float | None = None
    trigger_price: float | None = None
    time_in_force: str = "gtc"
    expires_at: datetime | None = None
    post_only: bool = False
    protective: bool = False
    placed_at: datetime | None = None
    trailing_offset: float | None = None
    trailing_offset_pct: float | None = None
    # What is booked of it: cumulative quantity, average price and fee (quote).
    filled_quantity: float = 0.0
    average_price: float = 0.0
    fee: float = 0.0


@dataclass(frozen=True)
class OrderEvent:
    """One state an order went through, with what was filled of it then."""

    client_order_id: str
    state: OrderStatus
    filled_quantity: float
    average_price: float
    fee: float
    detail: str | None
    at: datetime


@dataclass(frozen=True)
class LinkControls:
    """What the operator asked of a link: no new entries (paused), not running (stopped)."""

    paused: bool = False
    stopped: bool = False


@dataclass(frozen=True)
class FillRecord:
    client_order_id: str
    asset: str
    side: str
    quantity: float
    price: float
    fee: float
    candle_time: datetime
    exchange_order_id: str | None


ORDER_COLUMNS = ("client_order_id, link, asset, side, quantity, reference_price, reason, state, "
                 "exchange_order_id, detail, created_at, order_type, limit_price, trigger_price, time_in_force, "
                 "expires_at, post_only, protective, placed_at, filled_quantity, average_price, fee, trailing_offset, "
                 "trailing_offset_pct")
DONE_STATES = tuple(status.value for status in OrderStatus if status.done)


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _order_from_row(row: tuple) -> OrderRecord:
    (client_order_id, link, asset, side, quantity, reference_price, reason, state, exchange_id, detail, created,
     order_type, limit_price, trigger_price, time_in_force, expires_at, post_only, protective, placed_at,
     filled_quantity, average_price, fee, trailing_offset, trailing_offset_pct) = row
    return OrderRecord(client_order_id, link, asset, side, quantity, reference_price, reason, OrderStatus(state),
                       exchange_id, detail, datetime.fromisoformat(created), order_type, limit_price, trigger_price,
                       time_in_force, _moment(expires_at), bool(post_only), bool(protective), _moment(placed_at),
                       trailing_offset, trailing_offset_pct, filled_quantity, average_price, fee)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class StateStore:
    """Used by every strategy thread at once: one connection, one lock, short transactions."""

    def __init__(self, path: Path, connection: sqlite3.Connection, lock_fd: int) -> None:
        self.path = path
        self._db = connection
        self._lock = threading.Lock()
        self._lock_fd = lock_fd
        self._identity = _file_identity(path)
        self._lost: str | None = None  # why the database file is no longer the one opened

    @classmethod
    def open(cls, data_dir: Path, operation_name: str, new_state: bool = False) -> "StateStore":
        """Lock the data dir for this operation and open (or create) its database; a database
        missing after an earlier run (its lock file is there) is created only with new_state."""
        if data_dir.exists() and not data_dir.is_dir():
            raise ConfigError(data_dir, "is a file, not a directory", "--data-dir")
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(data_dir, f"cannot create the data dir: {exc.strerror}", "--data-dir") from None
        path = data_dir / f"{operation_name}.sqlite3"
        lock_path = data_dir / f"{operation_name}.lock"
        used_before = lock_path.exists()
        lock_fd = _lock_exclusively(lock_path)
        try:
            if used_before and not path.exists() and not new_state:
                raise ConfigError(path, f"the database is missing, but {lock_path} shows an earlier run used this "
                                  "data dir: its accounts would silently start over. Restore the database, or pass "
                                  "--new-state to start with fresh accounts")
            connection = _open_database(path)
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, connection, lock_fd)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        os.close(self._lock_fd)

    # --- accounts ----------------------------------------------------------------------------

    def load_account(self, link: str) -> AccountState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT starting_capital, cash, fees_paid, peak_equity, max_drawdown_pct, trades "
                "FROM accounts WHERE link = ?", (link,)).fetchone()
            if row is None:
                return None
            positions = {
                asset: PositionState(qty, price) for asset, qty, price in self._db.execute(
                    "SELECT asset, qty, avg_entry_price FROM positions WHERE link = ?", (link,))
            }
        starting_capital, cash, fees_paid, peak_equity, max_drawdown_pct, trades = row
        return AccountState(starting_capital, cash, fees_paid, peak_equity, max_drawdown_pct, trades, positions)

    def save_account(self, link: str, account: AccountState, cursor: tuple[str, datetime] | None = None) -> None:
        """The account, and with it the last processed candle of a symbol, in one transaction."""
        with self._lock, self._db:
            self._check_file()
            self._write_account(link, account)
            if cursor is not None:
                self._db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?)",
                                 (link, cursor[0], cursor[1].isoformat()))

    def account_mode(self, link: str) -> str | None:
        """`paper` or `live`: how the link's account has traded (None before it was recorded)."""
        with self._lock:
            row = self._db.execute("SELECT mode FROM accounts WHERE link = ?", (link,)).fetchone()
        return None if row is None else row[0]

    def set_account_mode(self, link: str, mode: str) -> None:
        with self._lock, self._db:
            self._check_file()
            self._db.execute("UPDATE accounts SET mode = ? WHERE link = ?", (mode, link))

    def cursors(self, link: str) -> dict[str, datetime]:
        """Per symbol, the last candle link processed."""
        with self._lock:
            rows = self._db.execute("SELECT symbol, last_candle FROM cursors WHERE link = ?", (link,)).fetchall()
        return {symbol: datetime.fromisoformat(candle) for symbol, candle in rows}

    def link_controls(self, link: str) -> LinkControls:
        with self._lock:
            row = self._db.execute("SELECT paused, stopped FROM link_controls WHERE link = ?", (link,)).fetchone()
        return LinkControls() if row is None else LinkControls(bool(row[0]), bool(row[1]))

    def save_link_controls(self, link: str, controls: LinkControls) -> None:
        with self._lock, self._db:
            self._check_file()
            self._db.execute("INSERT OR REPLACE INTO link_controls VALUES (?, ?, ?, ?)",
                             (link, int(controls.paused), int(controls.stopped), _now()))

    # --- orders and fills ----------------------------------------------------------------------

    def record_intent(self, order: OrderRecord) -> None:
        with self._lock, self._db:
            self._check_file()
            now = (order.created_at or datetime.now(UTC)).isoformat()
            self._db.execute(
                f"INSERT INTO orders ({ORDER_COLUMNS}, updated_at) VALUES ({', '.join('?' * 25)})",
                (order.client_order_id, order.link, order.asset, order.side, order.quantity,
                 order.reference_price, order.reason, order.state.value, order.exchange_order_id,
                 order.detail, now, order.order_type, order.limit_price, order.trigger_price, order.time_in_force,
                 _text(order.expires_at), int(order.post_only), int(order.protective), _text(order.placed_at),
                 order.filled_quantity, order.average_price, order.fee, order.trailing_offset,
                 order.trailing_offset_pct, now))
            self._record_event(order.client_order_id)

    def update_order(self, client_order_id: str, state: OrderStatus, exchange_order_id: str | None = None,
                     detail: str | None = None, booked: tuple[float, float, float] | None = None,
                     amended: tuple[float, float | None, float | None] | None = None) -> None:
        """The order's new state, with what is booked of it (quantity, average price, fee) and its
        amended (quantity, limit price, trigger price) when given."""
        with self._lock, self._db:
            self._check_file()
            self._set_order_state(client_order_id, state, exchange_order_id, detail, booked, amended)

    def record_fill(self, link: str, fill: FillRecord, account: AccountState, order_state: OrderStatus,
                    booked: tuple[float, float, float] | None = None) -> None:
        """The fill, the account it produced and the order's new state (with what is booked of it
        now: quantity, average price, fee; the fill alone when not given): all or nothing."""
        with self._lock, self._db:
            self._check_file()
            self._db.execute(
                "INSERT INTO fills (client_order_id, link, asset, side, quantity, price, fee, candle_time, "
                "exchange_order_id, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (fill.client_order_id, link, fill.asset, fill.side, fill.quantity, fill.price, fill.fee,
                 fill.candle_time.isoformat(), fill.exchange_order_id, _now()))
            self._write_account(link, account)
            self._set_order_state(fill.client_order_id, order_state, fill.exchange_order_id, None,
                                  booked or (fill.quantity, fill.price, fill.fee), None)

    def open_orders(self, link: str) -> list[OrderRecord]:
        """Orders of link not done (pending, open, partly filled, unknown), oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE link = ? AND state NOT IN "
                f"({', '.join('?' * len(DONE_STATES))}) ORDER BY created_at", (link, *DONE_STATES)).fetchall()
        return [_order_from_row(row) for row in rows]

    def order_events(self, link: str) -> list[OrderEvent]:
        """Every state link's orders went through, in the order they were journaled."""
        with self._lock:
            rows = self._db.execute(
                "SELECT client_order_id, state, filled_quantity, average_price, fee, detail, at FROM order_events "
                "WHERE link = ? ORDER BY id", (link,)).fetchall()
        return [OrderEvent(cid, OrderStatus(state), filled, average, fee, detail, datetime.fromisoformat(at))
                for cid, state, filled, average, fee, detail, at in rows]

    def protections(self, link: str) -> dict[str, tuple[float, float | None]]:
        """Per asset, the (stop, take-profit) asked for link's position."""
        with self._lock:
            rows = self._db.execute("SELECT asset, stop_price, take_profit_price FROM protections WHERE link = ?",
                                    (link,)).fetchall()
        return {asset: (stop, take_profit) for asset, stop, take_profit in rows}

    def save_protection(self, link: str, asset: str, prices: tuple[float, float | None] | None) -> None:
        with self._lock, self._db:
            self._check_file()
            if prices is None:
                self._db.execute("DELETE FROM protections WHERE link = ? AND asset = ?", (link, asset))
            else:
                self._db.execute("INSERT OR REPLACE INTO protections VALUES (?, ?, ?, ?, ?)",
                                 (link, asset, prices[0], prices[1], _now()))

    def fills(self, link: str) -> list[FillRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT client_order_id, asset, side, quantity, price, fee, candle_time, exchange_order_id "
                "FROM fills WHERE link = ? ORDER BY id", (link,)).fetchall()
        return [
            FillRecord(order_id, asset, side, quantity, price, fee, datetime.fromisoformat(candle), exchange_id)
            for order_id, asset, side, quantity, price, fee, candle, exchange_id in rows
        ]

    def order(self, client_order_id: str) -> OrderRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {ORDER_COLUMNS} FROM orders WHERE client_order_id = ?",
                                   (client_order_id,)).fetchone()
        return None if row is None else _order_from_row(row)

    # --- internals (caller holds the lock, inside a transaction) --------------------------------

    def _check_file(self) -> None:
        """StateLostError unless `path` is still the file opened: a write to a deleted (or
        replaced) database would be lost at exit, and the next start would find other accounts."""
        if self._lost is None:
            identity = _file_identity(self.path)
            if identity == self._identity:
                return
            self._lost = "deleted" if identity is None else "replaced by another file"
            log.error("state_database_lost", path=str(self.path), reason=self._lost)
        raise StateLostError(f"the state database {self.path} was {self._lost} while running; nothing more "
                             "is written to it (restore it, or restart with --new-state for fresh accounts)")

    def _write_account(self, link: str, account: AccountState) -> None:
        self._db.execute(
            "INSERT INTO accounts (link, starting_capital, cash, fees_paid, peak_equity, max_drawdown_pct, trades, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (link) DO UPDATE SET "
            "starting_capital = excluded.starting_capital, cash = excluded.cash, fees_paid = excluded.fees_paid, "
            "peak_equity = excluded.peak_equity, max_drawdown_pct = excluded.max_drawdown_pct, "
            "trades = excluded.trades, updated_at = excluded.updated_at",
            (link, account.starting_capital, account.cash, account.fees_paid, account.peak_equity,
             account.max_drawdown_pct, account.trades, _now()))
        self._db.execute("DELETE FROM positions WHERE link = ?", (link,))
        self._db.executemany(
            "INSERT INTO positions VALUES (?, ?, ?, ?)",
            [(link, asset, p.qty, p.avg_entry_price) for asset, p in account.positions.items() if p.qty > 0])

    def _set_order_state(self, client_order_id: str, state: OrderStatus, exchange_order_id: str | None,
                         detail: str | None, booked: tuple[float, float, float] | None,
                         amended: tuple[float, float | None, float | None] | None) -> None:
        self._db.execute(
            "UPDATE orders SET state = ?, exchange_order_id = COALESCE(?, exchange_order_id), "
            "detail = COALESCE(?, detail), updated_at = ? WHERE client_order_id = ?",
            (state.value, exchange_order_id, detail, _now(), client_order_id))
        if booked is not None:
            self._db.execute("UPDATE orders SET filled_quantity = ?, average_price = ?, fee = ? "
                             "WHERE client_order_id = ?", (*booked, client_order_id))
        if amended is not None:
            self._db.execute("UPDATE orders SET quantity = ?, limit_price = ?, trigger_price = ? "
                             "WHERE client_order_id = ?", (*amended, client_order_id))
        self._record_event(client_order_id)

    def _record_event(self, client_order_id: str) -> None:
        """The order's state as just written, as one more event of its history."""
        self._db.execute(
            "INSERT INTO order_events (client_order_id, link, state, filled_quantity, average_price, fee, detail, at) "
            "SELECT client_order_id, link, state, filled_quantity, average_price, fee, detail, ? FROM orders "
            "WHERE client_order_id = ?", (_now(), client_order_id))


def _file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at path; None when there is none."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _lock_exclusively(lock_path: Path) -> int:
    """Hold an exclusive lock on lock_path for the process's lifetime (released by the kernel on
    any exit, kill -9 included); a second daemon on the same data dir is a config error."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigError(lock_path, f"another run-operation (pid {holder}) is using this data dir; "
                          "stop it first or pass another --data-dir") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _open_database(path: Path) -> sqlite3.Connection:
    """Open path, refusing (untouched) a file that is not an opdaemon database of a known version."""
    if path.is_file() and path.stat().st_size == 0:
        # SQLite would take it for a new database: every account would silently start over.
        raise ConfigError(path, "the database file is empty, so every account in it would start over; "
                          "it was left untouched (remove it to start with fresh accounts)")
    try:
        connection = sqlite3.connect(path, check_same_thread=False)
    except sqlite3.Error as exc:
        raise ConfigError(path, f"cannot open the database: {exc}") from None
    try:
        _check_or_create_schema(path, connection)
    except BaseException:
        connection.close()
        raise
    return connection


def _check_or_create_schema(path: Path, connection: sqlite3.Connection) -> None:
    untouched = "; it was left untouched"
    try:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise ConfigError(path, "not an opdaemon database (it has no meta table)" + untouched)
        if "meta" in tables:
            version = _schema_version(path, connection, untouched)
            problem = connection.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise ConfigError(path, f"the database is damaged ({problem})" + untouched)
            missing = sorted(set(TABLES_OF_VERSION[version]) - tables)
            if missing:
                raise ConfigError(path, f"the database is damaged (no table {', '.join(missing)})" + untouched)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")  # a commit survives power loss, not just kill -9
        if "meta" not in tables:  # a new database: the whole schema or nothing
            later = "".join(MIGRATIONS[target] for target in range(4, SCHEMA_VERSION + 1))
            connection.executescript(
                f"BEGIN; {SCHEMA_3} {later} INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;")
        elif version < SCHEMA_VERSION:
            _migrate(connection, version)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(path, f"not a readable database ({exc})" + untouched) from None


def _schema_version(path: Path, connection: sqlite3.Connection, untouched: str) -> int:
    row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = row[0] if row else None
    if not (isinstance(version, str) and version.isdigit() and int(version) > 0):
        raise ConfigError(path, f"the database is damaged (schema version {version!r})" + untouched)
    if int(version) > SCHEMA_VERSION:
        raise ConfigError(path, f"written by a newer opdaemon (schema version {version}; this one knows "
                          f"versions up to {SCHEMA_VERSION})" + untouched)
    return int(version)


def _migrate(connection: sqlite3.Connection, version: int) -> None:
    """Bring a database of an older schema version up to SCHEMA_VERSION, one version at a time,
    all in one transaction."""
    steps = "".join(MIGRATIONS[target] for target in range(version + 1, SCHEMA_VERSION + 1))
    connection.executescript(
        f"BEGIN; {steps} UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version'; COMMIT;")
