"""`run-operation download-data` end to end: the real command line (ccxt paced 1 ms a request,
tests/fast_cli.py) against the local fake's Trades pages, real files in tmp_path; the files are
compared with candles built from the same trades by the plain loop below, and read back as a
backtest reads them."""

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from backend.market_data.candle_file import read_candle_file
from backend.market_data.market_rules import MarketRules, load_market_rules
from tests.fake_kraken import OHLC_WINDOW, TRADES_PAGE_SIZE, running_fake_kraken, trade
from tests.helpers import REPO

pytestmark = pytest.mark.e2e

START = 1672531200  # 2023-01-01T00:00:00Z
PAIRS = {"BTC/USD": ("XXBTZUSD", "btcusd", 16_500.0), "ETH/USD": ("XETHZUSD", "ethusd", 1_200.0)}
TIMEFRAMES = {"1m": 60, "5m": 300, "1h": 3600}
QUIET = (START + 2 * 3600, START + 3 * 3600)  # no trade at all in this hour: a gap in every file
UNTIL = START + 6 * 3600


def trade_history(price: float, count: int, seed: int, first_id: int = 1, start: float = START,
                  end: float = UNTIL, step: float = 5.0) -> list[list]:
    """`count` trades between start and end (none in QUIET), strictly later one after another,
    with Kraken's sub-second times, a random walk of prices (steps up to `step`) and random volumes."""
    rng = random.Random(seed)
    times = sorted({round(rng.uniform(start, end), 4) for _ in range(count * 2)})
    times = sorted(rng.sample([t for t in times if not QUIET[0] <= t < QUIET[1]], count))  # start to end
    rows = []
    for index, moment in enumerate(times):
        price = max(1.0, price + rng.choice((-1, 1)) * rng.random() * step)
        rows.append(trade(moment, price, rng.random() * 2, first_id + index))
    return rows


def expected_candles(rows: list[list], step: int, before: float = UNTIL) -> list[tuple]:
    """Candles from trades the plain way: each trade into its interval on the UTC grid; first
    price, highest, lowest, last, summed volume; an interval without trades has no candle."""
    candles: dict[int, list[float]] = {}
    for price_text, volume_text, moment, *_ in rows:
        if moment >= before:
            continue
        opened = math.floor(moment) // step * step
        price, volume = float(price_text), float(volume_text)
        if opened not in candles:
            candles[opened] = [price, price, price, price, 0.0]
        candle = candles[opened]
        candle[1], candle[2] = max(candle[1], price), min(candle[2], price)
        candle[3] = price
        candle[4] += volume
    closed = {opened: values for opened, values in candles.items() if opened + step <= before}
    return [(opened, *values) for opened, values in sorted(closed.items())]


def candles_in(path: Path) -> list[tuple]:
    if path.suffix == ".parquet":
        table = pq.read_table(path).to_pydict()
        times = [int(moment.timestamp()) for moment in table["timestamp"]]
    else:
        lines = path.read_text().splitlines()
        assert lines[0] == "timestamp,open,high,low,close,volume"
        table = {name: [] for name in ("timestamp", "open", "high", "low", "close", "volume")}
        for line in lines[1:]:
            for name, cell in zip(table, line.split(","), strict=True):
                table[name].append(cell)
        from datetime import datetime
        times = [int(datetime.fromisoformat(cell).timestamp()) for cell in table["timestamp"]]
    columns = [[float(value) for value in table[name]] for name in ("open", "high", "low", "close", "volume")]
    return list(zip(times, *columns, strict=True))


def download(fake_url: str, out: Path, *flags: object, symbols: tuple[str, ...] = tuple(PAIRS),
             until: int | None = UNTIL) -> list[str]:
    arguments = ["download-data", "--symbols", *symbols, "--timeframes", *TIMEFRAMES, "--since", "2023-01-01",
                 "--out", str(out), "--api-url", fake_url, "--log-format", "json"]
    if until is not None:
        arguments += ["--until", time.strftime("%Y-%m-%dT%H:%M", time.gmtime(until))]
    return [sys.executable, "-m", "tests.fast_cli", *arguments, *map(str, flags)]


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=50,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def scripted_fake(fake, trades_per_symbol: int = 3_500) -> dict[str, list[list]]:
    histories = {}
    for seed, (symbol, (pair_id, _, price)) in enumerate(PAIRS.items()):
        histories[symbol] = trade_history(price, trades_per_symbol, seed)
        fake.set_trades(pair_id, histories[symbol])
    return histories


def file_of(out: Path, symbol: str, timeframe: str, extension: str = "parquet") -> Path:
    return out / f"kraken_{PAIRS[symbol][1]}_{timeframe}.{extension}"


def assert_files_hold(out: Path, histories: dict[str, list[list]], extension: str = "parquet",
                      before: float = UNTIL) -> None:
    for symbol, rows in histories.items():
        for timeframe, step in TIMEFRAMES.items():
            path = file_of(out, symbol, timeframe, extension)
            assert candles_in(path) == expected_candles(rows, step, before), path.name
            read_candle_file(path, timeframe)  # as a backtest's data_file: every check passes


def wait_for_trades(state: Path, count: int, process: subprocess.Popen) -> None:
    """Until the download's state file says `count` trades were read (and saved)."""
    deadline = time.monotonic() + 30
    while not (state.exists() and json.loads(state.read_text())["trades"] >= count):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)


def ohlc_rows(trades: list[list], step: int, first: int, now: float) -> list[list]:
    """Kraken's OHLC rows of the trades before `now`, one per interval from the one holding
    `first` to the one holding `now` (the forming one, last); an interval without a trade is a row
    of count 0 and volume 0 at the previous close, as Kraken sends it. Volumes carry every digit,
    so that a row's candle is the trades' candle to the bit."""
    before_now = [row for row in trades if row[2] < now]
    built = {opened: values for opened, *values in expected_candles(before_now, step, (now // step + 1) * step)}
    counts: dict[int, int] = {}
    for *_, moment, _side, _kind, _misc, _id in before_now:
        counts[math.floor(moment) // step * step] = counts.get(math.floor(moment) // step * step, 0) + 1
    rows, close = [], built[min(built)][0]
    for opened in range(first // step * step, int(now) // step * step + step, step):
        if opened in built:
            open_, high, low, close, volume = built[opened]
            rows.append([opened, *map(repr, (open_, high, low, close, close, volume)), counts[opened]])
        else:
            rows.append([opened, *[repr(close)] * 4, "0.000000", "0.00000000", 0])
    return rows


def candles_of_rows(rows: list[list], step: int, first: int, before: float) -> list[tuple]:
    """The candles a file gets from OHLC rows: those that closed by `before`, from `first` on, with
    at least one trade (a row of count 0 is an interval without trades: a gap)."""
    return [(row[0], *(float(row[index]) for index in (1, 2, 3, 4, 6))) for row in rows[:-1]
            if row[7] > 0 and row[0] >= first and row[0] + step <= before]


def serve_ohlc(fake, histories: dict[str, list[list]], first: int, now: float) -> dict[str, dict[str, list[list]]]:
    """The fake's OHLC rows of every timeframe, built from the histories up to `now` (its clock)."""
    fake.clock = lambda: now
    served: dict[str, dict[str, list[list]]] = {}
    for symbol, rows in histories.items():
        for timeframe, step in TIMEFRAMES.items():
            served.setdefault(symbol, {})[timeframe] = ohlc_rows(rows, step, first, now)
            fake.set_candles(PAIRS[symbol][0], served[symbol][timeframe], interval=step // 60)
    return served


def sources_logged(stderr: str) -> dict[str, tuple[str, str]]:
    lines = [json.loads(line) for line in stderr.splitlines() if '"download_source"' in line]
    return {line["symbol"]: (line["source"], line["reason"]) for line in lines}


@pytest.mark.parametrize("extension", ["parquet", "csv"])
def test_the_files_hold_the_candles_of_the_trades_for_each_symbol_and_timeframe(tmp_path, extension):
    with running_fake_kraken() as fake:
        histories = scripted_fake(fake)
        done = run(download(fake.url, tmp_path, "--format", extension))
        assert done.returncode == 0, done.stderr[-2000:]
        pages = len(fake.received("public/Trades"))
    assert_files_hold(tmp_path, histories, extension)
    # Every page but each symbol's last was a full one: nothing asked twice.
    assert pages == sum(len(rows) // TRADES_PAGE_SIZE + 1 for rows in histories.values())
    hourly = candles_in(file_of(tmp_path, "BTC/USD", "1h", extension))
    assert [opened for opened, *_ in hourly] == [START + hour * 3600 for hour in (0, 1, 3, 4, 5)]  # the quiet hour
    gapped = read_candle_file(file_of(tmp_path, "ETH/USD", "1h", extension), "1h")
    assert gapped.missing_in(gapped.holes_within(range(gapped.rows))) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [file_of(tmp_path, symbol, timeframe, extension).name for symbol in PAIRS for timeframe in TIMEFRAMES]
        + [f"kraken_{slug}.download.json" for _, slug, _ in PAIRS.values()] + ["markets.json"])
    assert f"kraken_btcusd_1h.{extension}: 5 candles" in done.stdout


def test_the_market_rules_are_saved_beside_the_files_and_other_symbols_rules_kept(tmp_path):
    with running_fake_kraken() as fake:
        scripted_fake(fake, trades_per_symbol=50)
        assert run(download(fake.url, tmp_path, "--timeframes", "1h", symbols=("ETH/USD",))).returncode == 0
        first = load_market_rules(tmp_path / "markets.json")
        assert list(first.markets) == ["ETH/USD"]
        assert run(download(fake.url, tmp_path, "--timeframes", "1h", symbols=("BTC/USD",))).returncode == 0
    saved = load_market_rules(tmp_path / "markets.json")
    assert saved.exchange == "kraken" and saved.fetched_at > first.fetched_at
    # AssetPairs as the fake states them: BTC/USD 1 price decimal, ETH/USD 2; both on a 0.1 tick, 8 lot decimals.
    assert saved.markets == {
        "BTC/USD": MarketRules(price_increment=0.1, amount_increment=1e-8, min_quantity=0.00005, min_cost=0.5),
        "ETH/USD": MarketRules(price_increment=0.1, amount_increment=1e-8, min_quantity=0.002, min_cost=0.5),
    }


@pytest.mark.slow
def test_a_download_killed_or_interrupted_resumes_to_the_same_bytes(tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    with running_fake_kraken() as fake:
        histories = scripted_fake(fake, trades_per_symbol=5_000)
        assert run(download(fake.url, whole)).returncode == 0
        fake.delay_replies("public/Trades", 0.25, count=1_000)
        state = resumed / "kraken_btcusd.download.json"
        process = subprocess.Popen(download(fake.url, resumed, "--save-every", 0), cwd=REPO,
                                   env={**os.environ, "PYTHONPATH": str(REPO)},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_trades(state, 2 * TRADES_PAGE_SIZE, process)
        process.kill()  # kill -9: no handler runs
        process.wait()
        placed = [path for path in resumed.iterdir() if not path.name.startswith(".")]
        assert placed, "nothing was saved before the kill"
        for path in placed:  # what is in place is whole: a backtest reads it
            if path.suffix == ".parquet":
                read_candle_file(path, path.stem.rsplit("_", 1)[1])
        saved = json.loads(state.read_text())
        asked = len(fake.received("public/Trades"))
        # Interrupted again, by SIGINT this time, once it went on: it saves and says how to go on.
        interrupted = subprocess.Popen(download(fake.url, resumed, "--save-every", 0), cwd=REPO,
                                       env={**os.environ, "PYTHONPATH": str(REPO)},
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_trades(state, saved["trades"] + 1, interrupted)
        interrupted.send_signal(signal.SIGINT)
        _, err = interrupted.communicate(timeout=30)
        assert interrupted.returncode == 0, err[-2000:]
        assert "run the same command again to resume" in err
        # It went on from where the killed one had saved, not from --since.
        assert fake.received("public/Trades")[asked].params["since"] == str(saved["cursor"]["since"])
        fake.delay_replies("public/Trades", 0.0, count=0)
        finished = run(download(fake.url, resumed))
        assert finished.returncode == 0, finished.stderr[-2000:]
    for symbol in PAIRS:
        for timeframe in TIMEFRAMES:
            assert file_of(resumed, symbol, timeframe).read_bytes() == file_of(whole, symbol, timeframe).read_bytes()
    assert not [path.name for path in resumed.iterdir() if path.name.startswith(".")]  # no temporary file left
    assert_files_hold(resumed, histories)


def test_files_written_ahead_of_their_state_file_get_no_candle_twice(tmp_path):
    """A crash after the files were replaced and before the state file was: the next run reads
    those trades again, and the candles they close are already there."""
    with running_fake_kraken() as fake:
        histories = scripted_fake(fake, trades_per_symbol=1_500)
        assert run(download(fake.url, tmp_path, until=UNTIL - 2 * 3600 - 1234)).returncode == 0
        earlier_states = {path: path.read_bytes() for path in tmp_path.glob("*.download.json")}
        assert run(download(fake.url, tmp_path)).returncode == 0
        for path, state in earlier_states.items():  # as if the last save had stopped before them
            path.write_bytes(state)
        again = run(download(fake.url, tmp_path))
        assert again.returncode == 0, again.stderr[-2000:]
    assert_files_hold(tmp_path, histories)  # a candle written twice: a file no backtest reads


def test_a_second_run_reads_only_the_new_trades_and_writes_the_candles_kraken_closed_since(tmp_path):
    """Without --until a run ends at Kraken's clock (its `Time`): the candles of the last trades
    read keep forming in the state file, and the next run goes on with them."""
    with running_fake_kraken() as fake:
        histories = scripted_fake(fake, trades_per_symbol=2_500)
        first_now = START + 4 * 3600 + 1800  # the 1h candle of 04:00 is half traded
        fake.clock = lambda: first_now
        assert run(download(fake.url, tmp_path, until=None)).returncode == 0
        first_run = fake.received("public/Trades")
        assert_files_hold(tmp_path, histories, before=first_now)
        later = trade_history(16_000.0, 1_200, seed=7, first_id=len(histories["BTC/USD"]) + 1,
                              start=UNTIL, end=UNTIL + 3 * 3600)
        fake.add_trades("XXBTZUSD", later)
        histories["BTC/USD"] += later
        second_now = int(later[-1][2]) + 1  # the newest trade's candles are still forming
        fake.clock = lambda: second_now
        again = run(download(fake.url, tmp_path, until=None))
        assert again.returncode == 0, again.stderr[-2000:]
        second_run = fake.received("public/Trades")[len(first_run):]
    for pair_id, *_ in PAIRS.values():
        asked_before = [int(request.params["since"]) for request in first_run if request.params["pair"] == pair_id]
        asked_now = [int(request.params["since"]) for request in second_run if request.params["pair"] == pair_id]
        # The page the first run stopped in is read again from its start, nothing before it, each page once.
        assert asked_now[0] == asked_before[-1] and asked_now == sorted(set(asked_now)), pair_id
    assert_files_hold(tmp_path, histories, before=second_now)


def test_rate_limits_are_waited_out_and_repeated_trades_kept_once(tmp_path):
    with running_fake_kraken() as fake:
        histories = scripted_fake(fake)
        fake.refuse_next(1, "EAPI:Rate limit exceeded", "public/Trades")
        fake.refuse_next(1, "EGeneral:Too many requests", "public/Trades")
        fake.repeat_trade_next(3)
        done = run(download(fake.url, tmp_path, symbols=("BTC/USD",)))
        assert done.returncode == 0, done.stderr[-2000:]
        asked = fake.received("public/Trades")
    assert fake.rate_limited == 2
    assert asked[1].at - asked[0].at >= 0.9 and asked[2].at - asked[1].at >= 1.8  # waited, then longer
    assert '"event": "download_rate_limited"' in done.stderr
    assert_files_hold(tmp_path, {"BTC/USD": histories["BTC/USD"]})


def test_a_dropped_page_is_asked_again(tmp_path):
    with running_fake_kraken() as fake:
        histories = scripted_fake(fake)
        fake.lose_next_reply("public/Trades")  # the connection closes before the page is sent
        done = run(download(fake.url, tmp_path, symbols=("ETH/USD",)))
        assert done.returncode == 0, done.stderr[-2000:]
    retries = [json.loads(line) for line in done.stderr.splitlines() if '"download_retry"' in line]
    assert [(line["attempt"], line["symbol"], line["retry_in_seconds"]) for line in retries] == [(1, "ETH/USD", 1.0)]
    assert "connection reset or closed by the server" in retries[0]["cause"]
    assert_files_hold(tmp_path, {"ETH/USD": histories["ETH/USD"]})


@pytest.mark.parametrize(("flags", "message"), [
    (["--symbols", "BTCUSD"], "--symbols: not BASE/QUOTE: 'BTCUSD'"),
    (["--timeframes", "1x"], "--timeframes: not a timeframe"),
    (["--since", "yesterday"], "--since: not a date: 'yesterday'"),
    (["--format", "xlsx"], "--format: invalid choice: 'xlsx'"),
    (["--until", "2022-12-01"], "--until: 2022-12-01T00:00:00+00:00 is not after --since"),
    (["--symbols", "DOGE/XYZ"], "--symbols: Kraken lists no DOGE/XYZ"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, flags, message):
    with running_fake_kraken() as fake:
        command = download(fake.url, tmp_path, until=None)
        command += flags  # argparse keeps the last value of a flag given twice
        done = run(command)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("run-operation: download-data: "), done.stderr
    assert message in lines[0]
    assert not list(tmp_path.glob("kraken_*")) if tmp_path.exists() else True


def test_another_since_format_or_timeframes_than_the_saved_download_is_refused(tmp_path):
    with running_fake_kraken() as fake:
        scripted_fake(fake, trades_per_symbol=500)
        assert run(download(fake.url, tmp_path, symbols=("BTC/USD",))).returncode == 0
        written = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
        refusals = {flag: run([*download(fake.url, tmp_path, symbols=("BTC/USD",)), flag, *values])
                    for flag, values in (("--since", ["2023-01-01T01:00"]), ("--format", ["csv"]),
                                         ("--timeframes", ["1m", "5m"]))}
    state = tmp_path / "kraken_btcusd.download.json"
    for flag, refused in refusals.items():
        assert refused.returncode == 2
        assert refused.stderr.splitlines() == [refused.stderr.strip()], flag  # one line
        assert refused.stderr.startswith(f"run-operation: download-data: {state}: {flag}: the files beside it "), flag
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == written  # nothing touched


def test_the_shipped_multi_asset_example_runs_on_what_download_data_fetched(tmp_path):
    """The README's two steps for config/operations/multi_asset_dca_demo.yaml, with the fake in
    place of Kraken: download-data writes both hourly files and markets.json into data/, and the
    example as shipped trades both symbols from one account on them, by the downloaded rules."""
    days = 8  # the blueprint's slow EMA needs 72 hourly candles before it trades
    for folder, name in (("operations", "multi_asset_dca_demo"), ("strategies", "smart_dca_btc_eth"),
                         ("environments", "backtest_2023_q1_btc_eth")):
        (tmp_path / "config" / folder).mkdir(parents=True)
        shutil.copy(REPO / "config" / folder / f"{name}.yaml", tmp_path / "config" / folder)
    with running_fake_kraken() as fake:
        for seed, (pair_id, _, price) in enumerate(PAIRS.values()):
            # Steps of at most 0.03 % a trade: calm enough that the blueprint's volatility threat lets it buy.
            fake.set_trades(pair_id, trade_history(price, 4_000, seed, end=START + days * 86_400, step=price * 3e-4))
        done = run(download(fake.url, tmp_path / "data", "--timeframes", "1h", until=START + days * 86_400))
        assert done.returncode == 0, done.stderr[-2000:]
    operation = tmp_path / "config" / "operations" / "multi_asset_dca_demo.yaml"
    ran = run([sys.executable, "-m", "services.cli", str(operation)])
    assert ran.returncode == 0, ran.stderr[-2000:]
    lines = [json.loads(line) for line in ran.stderr.splitlines() if line.startswith("{")]
    (loaded,) = [line for line in lines if line["event"] == "market_rules_loaded"]
    assert loaded["symbols"] == ["BTC/USD", "ETH/USD"]
    (summary,) = [line for line in lines if line["event"] == "strategy_summary"]
    assert summary["status"] == "completed"
    assert [figures["asset"] for figures in summary["per_asset"]] == ["BTC/USD", "ETH/USD"]
    assert all(figures["trades"] >= 2 for figures in summary["per_asset"]), summary["per_asset"]


def test_a_range_within_kraken_s_ohlc_window_is_written_from_ohlc_without_trades(tmp_path):
    """Every timeframe's last 720 OHLC rows reach back to --since: the files are the rows (the
    forming one and those of intervals without trades left out), and no Trades page is asked."""
    now = START + 6 * 3600 + 1800  # 06:30: the 1m window reaches back to 18:31 the day before
    with running_fake_kraken() as fake:
        histories = {symbol: trade_history(price, 2_000, seed, start=START - 6 * 3600, end=now - 1)
                     for seed, (symbol, (_, _, price)) in enumerate(PAIRS.items())}
        for symbol, rows in histories.items():
            fake.set_trades(PAIRS[symbol][0], rows)
        served = serve_ohlc(fake, histories, START - 7 * 3600, now)
        done = run(download(fake.url, tmp_path, until=None))
        assert done.returncode == 0, done.stderr[-2000:]
        assert not fake.received("public/Trades")
        asked = [(request.params["pair"], request.params["interval"]) for request in fake.received("public/OHLC")]
    assert sorted(asked) == sorted((pair_id, str(step // 60)) for pair_id, *_ in PAIRS.values()
                                   for step in TIMEFRAMES.values())
    assert {symbol: source for symbol, (source, _) in sources_logged(done.stderr).items()} == dict.fromkeys(
        PAIRS, "ohlc")
    for symbol, rows in histories.items():
        for timeframe, step in TIMEFRAMES.items():
            written = candles_in(file_of(tmp_path, symbol, timeframe))
            assert written == candles_of_rows(served[symbol][timeframe], step, START, now), (symbol, timeframe)
            # The same candles as the trades make: the quiet hour a gap, not a candle of count 0.
            assert written == expected_candles([row for row in rows if row[2] >= START], step, now)
    hourly = candles_in(file_of(tmp_path, "BTC/USD", "1h"))
    assert [opened for opened, *_ in hourly] == [START + hour * 3600 for hour in (0, 1, 3, 4, 5)]


def test_after_an_ohlc_run_the_next_appends_only_new_candles_and_a_later_one_beyond_the_window_reads_trades(tmp_path):
    """Run 1 and run 2 within the window (OHLC; run 2 appends what closed since); run 3 comes 14 hours
    later, beyond the 1m window: trades for every timeframe, from the earliest candle a file still
    needs (the hour run 2's end was in), and the files are the trades' candles throughout."""
    first_now, second_now, third_now = START + 6 * 3600 + 1800, START + 9 * 3600 + 1800, START + 23 * 3600 + 1800
    rows: list[list] = []
    with running_fake_kraken() as fake:

        def run_after_trading(start: float, now: float, count: int, seed: int) -> subprocess.CompletedProcess:
            """`count` more trades from start on, Kraken's clock and OHLC rows at now, and a run."""
            rows.extend(trade_history(16_500.0, count, seed, first_id=len(rows) + 1, start=start, end=now - 1))
            fake.set_trades("XXBTZUSD", rows)
            serve_ohlc(fake, {"BTC/USD": rows}, START - 7 * 3600, now)
            done = run(download(fake.url, tmp_path, symbols=("BTC/USD",), until=None))
            assert done.returncode == 0, done.stderr[-2000:]
            return done

        run_after_trading(START - 6 * 3600, first_now, 1_500, seed=3)
        first_files = {timeframe: candles_in(file_of(tmp_path, "BTC/USD", timeframe)) for timeframe in TIMEFRAMES}
        run_after_trading(first_now, second_now, 600, seed=4)
        assert not fake.received("public/Trades")
        for timeframe, step in TIMEFRAMES.items():
            written = candles_in(file_of(tmp_path, "BTC/USD", timeframe))
            assert written[:len(first_files[timeframe])] == first_files[timeframe], timeframe  # appended
            assert len(written) > len(first_files[timeframe]), timeframe
            assert written == expected_candles([row for row in rows if row[2] >= START], step, second_now), timeframe
        third = run_after_trading(second_now, third_now, 1_500, seed=5)
        pages = fake.received("public/Trades")
    source, reason = sources_logged(third.stderr)["BTC/USD"]
    assert source == "trades" and reason.startswith("1m: "), reason
    assert pages and pages[0].params["since"] == str((START + 9 * 3600) * 1_000_000_000 - 1)
    for timeframe, step in TIMEFRAMES.items():
        path = file_of(tmp_path, "BTC/USD", timeframe)
        assert candles_in(path) == expected_candles([row for row in rows if row[2] >= START], step, third_now)
        read_candle_file(path, timeframe)


def test_a_range_beyond_one_timeframe_s_ohlc_window_is_read_from_trades_for_every_timeframe(tmp_path):
    """13 hours back: the 1h rows reach --since, the 1m rows (720 minutes) do not: one trade
    download makes every file."""
    now = START + 13 * 3600
    with running_fake_kraken() as fake:
        rows = trade_history(16_500.0, 1_500, seed=6, end=now - 1)
        fake.set_trades("XXBTZUSD", rows)
        served = serve_ohlc(fake, {"BTC/USD": rows}, START - 3600, now)
        assert len(served["BTC/USD"]["1m"]) > OHLC_WINDOW  # the fake sends the last 720 only
        done = run(download(fake.url, tmp_path, symbols=("BTC/USD",), until=None))
        assert done.returncode == 0, done.stderr[-2000:]
        assert fake.received("public/Trades")
    source, reason = sources_logged(done.stderr)["BTC/USD"]
    assert source == "trades" and reason.startswith("1m: "), reason
    for timeframe, step in TIMEFRAMES.items():
        assert candles_in(file_of(tmp_path, "BTC/USD", timeframe)) == expected_candles(rows, step, now), timeframe
