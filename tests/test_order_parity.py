"""One blueprint whose orders rest (post-only limit entries, a venue stop-loss and take-profit for
each position) books the same fills as a backtest on a file, as a paper run on the fake Kraken's
candles, and as a live run whose orders the fake Kraken rests and matches candle by candle.

The blueprint is the shipped ICT workforce with short indicator periods (warm from the 13th candle),
on 48 hours of the bundled data (2023-01-28 10:00 on) in which it enters four times: three
take-profits (one of them fires at once, the market already past it) and a stop.

The three runs apply the same market rules (the fake Kraken's AssetPairs: the backtest from a
markets.json fetched from it, the paper run from the venue, the live run as it sends orders): every
quantity truncated to the lot (8 decimals), every limit and trigger price on the 0.1 tick. So the
backtest and the paper run book identical fills, and the live run the same times, sides and prices;
its fees are the fake's, rounded to Kraken's 4 decimals of USD, so the equity it sizes on differs by
cents and a quantity by at most a lot."""

from pathlib import Path

import pytest

from backend.market_data.market_rules import save_market_rules
from backend.venues.kraken.market_rules import fetch_market_rules
from tests.daemon import Daemon
from tests.fake_kraken import TEST_API_KEY, TEST_API_SECRET, FakeKraken
from tests.live_support import KEY_ENV, SECRET_ENV, fake, fast_client, live_env  # noqa: F401  (fixture)
from tests.order_e2e import Market, Run, assert_clean, data_slice, operation_tree, report_rows, step

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FIRST_ROW, ROWS = "2023-01-28T10:00:00Z", 48
START_ROW = 15  # the first candle the live and paper runs trade (rows before it: warm-up)
BLUEPRINT = {
    "display_name": "ICT, short periods", "assets": ["BTC/USD"], "timeframe": "1h",
    "workforce": {
        "context": [
            {"plugin": "ema_detector", "params": {"fast_period": 5, "slow_period": 12}},
            {"plugin": "market_regime_classifier",
             "params": {"trend_threshold_pct": 0.3, "volatility_window": 8, "high_volatility_pct": 1.5}},
            {"plugin": "fair_value_gap_detector", "params": {"min_gap_pct": 0.1, "swing_lookback": 2}},
        ],
        "opportunity": [{"plugin": "fvg_reentry_opportunity",
                         "params": {"allowed_regimes": ["trending_up", "ranging"], "stop_buffer_pct": 0.2,
                                    "entry": "limit"}}],
        "planning": [{"plugin": "position_sizer",
                      "params": {"risk_per_trade_pct": 1.0, "reward_risk_ratio": 2.0, "max_position_pct": 95,
                                 "entry": "limit", "exits": "venue"}}],
        "execution": [{"plugin": "order_executor", "params": {"post_only": True, "cancel_after_candles": 6}}],
    },
}
CREDENTIALS = {KEY_ENV: TEST_API_KEY, SECRET_ENV: TEST_API_SECRET}
LOT = 1e-8  # XBT/USD: 8 lot decimals


def live_environment(fake: FakeKraken, mode: str) -> dict:  # noqa: F811
    """The fake Kraken's candles over REST; the simulator's default fill rules (no fee_rate)."""
    return {
        "type": "live", "display_name": f"fake kraken, {mode}", "exchange": "kraken", "symbols": ["BTC/USD"],
        "timeframe": "1h", "mode": mode, **({"allow_live_orders": True} if mode == "live" else {}),
        "api_key_env": KEY_ENV, "api_secret_env": SECRET_ENV, "api_url": fake.url, "market_data": "rest",
        "poll_interval_seconds": 0.02, "startup_timeout_seconds": 2, "order_wait_seconds": 2,
        "warmup_candles": START_ROW - 1, "starting_capital": 10_000,
    }


def run_backtest(root: Path, market: Market, fake: FakeKraken) -> list[dict]:  # noqa: F811
    """The slice, with the fake Kraken's market rules cached beside it (markets.json), as
    download-data leaves them: the backtest rounds and checks orders as the paper and live runs do."""
    root.mkdir(parents=True)
    save_market_rules(root / "markets.json", "kraken", fetch_market_rules(fast_client(live_env(fake)), ["BTC/USD"]))
    environment = {
        "type": "backtest", "display_name": "the slice", "data_file": str(market.write_csv(root / "slice.csv")),
        "symbol": "BTC/USD", "timeframe": "1h", "start": market.moment(0).isoformat(),
        "end": market.moment(ROWS - 1).isoformat(), "starting_capital": 10_000,  # the last row: forming live
    }
    operation = operation_tree(root, "ict", BLUEPRINT, "file", environment)
    daemon = Daemon([operation, "--data-dir", root / "state", "--report", root / "report"])
    code, _ = daemon.finish(timeout=30)
    assert code == 0, daemon.stderr
    return report_rows(root / "report", "ict@file", "trades.csv")


def run_on_the_fake(root: Path, fake: FakeKraken, market: Market, mode: str) -> list[dict]:  # noqa: F811
    operation = operation_tree(root, "ict", BLUEPRINT, mode, live_environment(fake, mode))
    market.show(START_ROW)  # rows before START_ROW closed: warm-up, then the latest traded
    run = Run(operation, root / "state", f"ict@{mode}", "--report", root / "report", env=CREDENTIALS)
    try:
        run.wait_processed(market.moment(START_ROW - 1))
        for index in range(START_ROW, ROWS - 1):
            step(market, run, index, trade=mode == "live")
        run.stop()
    finally:
        run.kill_if_running()
    assert_clean(run)
    return report_rows(root / "report", run.link, "trades.csv")


def fills(trades: list[dict]) -> list[tuple[str, str, float, float, float]]:
    return [(t["time"], t["side"], float(t["quantity"]), float(t["price"]), float(t["fee"])) for t in trades]


def assert_same_fills(booked: list[tuple], expected: list[tuple], rounded: bool) -> None:
    """Each fill: time, side and price equal; quantity and fee equal within float tolerance, or
    (rounded: a live run) the fee within Kraken's rounding of it and the quantity within a lot."""
    assert [(t, s) for t, s, *_ in booked] == [(t, s) for t, s, *_ in expected]
    for (_, _, quantity, price, fee), (*_, want_quantity, want_price, want_fee) in zip(booked, expected, strict=True):
        assert price == pytest.approx(want_price, rel=1e-12)
        if rounded:
            assert quantity == pytest.approx(want_quantity, rel=0, abs=LOT + 1e-12)
            assert fee == pytest.approx(want_fee, rel=1e-5, abs=0.0001)
        else:
            assert (quantity, fee) == pytest.approx((want_quantity, want_fee), rel=1e-9)


def test_a_backtest_a_paper_run_and_a_live_run_book_the_same_fills(tmp_path, fake):  # noqa: F811
    rows = data_slice(FIRST_ROW, ROWS)
    market = Market(fake, rows)
    backtest = fills(run_backtest(tmp_path / "backtest", market, fake))
    sides = [side for _, side, *_ in backtest]
    assert sides == ["buy", "sell"] * 4  # four round trips in the slice, all after the warm-up
    assert backtest[0][0] == market.moment(START_ROW + 1).isoformat()

    paper = fills(run_on_the_fake(tmp_path / "paper", fake, market, "paper"))
    assert_same_fills(paper, backtest, rounded=False)
    assert not [r for r in fake.requests if r.endpoint.startswith("private/") and "Balance" not in r.endpoint]

    live = fills(run_on_the_fake(tmp_path / "live", fake, market, "live"))
    assert_same_fills(live, backtest, rounded=True)
    added = [r.params["ordertype"] for r in fake.received("private/AddOrder")]
    assert added.count("limit") == 4 and added.count("stop-loss") == 4 and added.count("take-profit") == 4
    assert fake.received("private/AmendOrder") == []  # stops placed on the tick stay as they were placed
    assert [o["status"] for o in fake.orders.values()].count("closed") == 8  # entries and exits filled
    assert all(o["status"] in ("closed", "canceled") for o in fake.orders.values())
