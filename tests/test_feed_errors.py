"""A tick source that raises something unexpected, end to end through run-operation: the runs end
after the ticks already read, as stopped; the feed is reported failed; the exit code is 1."""

import json
import threading
from collections.abc import Iterator

from backend.interfaces.candle_columns import CandleColumns
from backend.market_data.backtest_source import BacktestSource
from backend.market_data.raw_tick import columns_of
from services.cli import main
from tests.helpers import backtest_environment, tick, write_config_tree
from tests.probes import probe_blueprint


def test_an_unexpected_source_error_stops_the_runs_fails_the_feed_and_exits_1(tmp_path, monkeypatch, capsys):
    def exploding(self: BacktestSource, stop: threading.Event) -> Iterator[CandleColumns]:
        yield columns_of([tick(0, 100), tick(1, 101)])
        raise RuntimeError("disk went away")

    monkeypatch.setattr(BacktestSource, "blocks", exploding)
    blueprint = probe_blueprint("a")
    blueprint["workforce"] = {"execution": [{"plugin": "market_order_executor"}]}
    operation = write_config_tree(tmp_path, [("a", "bt"), ("b", "bt")], {"a": blueprint, "b": blueprint},
                                  {"bt": backtest_environment()}, [tick(i, 100 + i) for i in range(5)])
    assert main([str(operation), "--data-dir", str(tmp_path / "var")]) == 1
    out, err = capsys.readouterr()
    assert "== a@bt [stopped]" in out and "== b@bt [stopped]" in out
    assert "run-operation: environment feed failed: bt: RuntimeError: disk went away" in err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    (failed,) = [e for e in events if e["event"] == "environment_feed_failed"]
    assert failed["error"] == "RuntimeError: disk went away" and "exception" in failed
    summaries = {e["strategy_link"]: e for e in events if e["event"] == "strategy_summary"}
    assert {link: s["ticks_processed"] for link, s in summaries.items()} == {"a@bt": 2, "b@bt": 2}
    assert all(s["status"] == "stopped" for s in summaries.values())
