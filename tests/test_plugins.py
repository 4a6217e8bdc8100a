"""Workers named by import path (`package.module:ClassName`): the shipped example package end to
end, and every way an import path can be wrong, through the real CLI."""

import sys
from datetime import timedelta
from pathlib import Path

import pytest

from services.cli import main
from tests.columnar import Replay, assert_same_trades, random_sizes, sample_candles
from tests.helpers import REPO, START, backtest_environment, blueprint, tick, write_config_tree
from tests.test_cli import json_lines

EXAMPLE_PLUGINS = REPO / "examples" / "plugins"
DETECTOR = "momentum_plugin.workers:MomentumDetector"
ENTRY = "momentum_plugin.workers:MomentumOpportunity"
MOMENTUM_DEMO = REPO / "config" / "strategies" / "momentum_plugin_demo.yaml"

# A module of the test's own, with a worker and the things that look like one but are not.
SAMPLE_PLUGINS = '''
from backend.interfaces import IWorker, WorkerCategory, WorkerParams


class NotAWorker:
    pass


class WindowParams(WorkerParams):
    window: int = 3


class ContextWorker(IWorker):
    category = WorkerCategory.CONTEXT
    Params = WindowParams

    def process(self, asset: str) -> None:
        pass


class Unfinished(IWorker):
    category = WorkerCategory.CONTEXT


class Fragile(IWorker):
    category = WorkerCategory.CONTEXT

    def __init__(self, params, services):
        super().__init__(params, services)
        raise RuntimeError("its model file is missing")

    def process(self, asset: str) -> None:
        pass
'''


@pytest.fixture
def example_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGINS))


@pytest.fixture
def sample_plugins(tmp_path, monkeypatch) -> str:
    """The name of an importable module holding SAMPLE_PLUGINS (fresh for each test)."""
    folder = tmp_path / "sandbox"
    folder.mkdir()
    (folder / "sample_plugins.py").write_text(SAMPLE_PLUGINS)
    monkeypatch.delitem(sys.modules, "sample_plugins", raising=False)
    monkeypatch.syspath_prepend(str(folder))
    return "sample_plugins"


def momentum_tree(root: Path, **entry_params: float) -> Path:
    """Flat closes for 30 hours, then +1 % an hour for 10 hours, then flat again."""
    closes = [100.0] * 30 + [100 * 1.01 ** step for step in range(1, 11)]
    closes += [closes[-1]] * 20
    strategy = blueprint({
        "context": [{"plugin": DETECTOR, "params": {"lookback": 5}}],
        "opportunity": [{"plugin": ENTRY, "params": {"min_change_pct": 3.5, **entry_params}}],
        "planning": [{"plugin": "position_sizer"}],
    })
    return write_config_tree(root, [("momentum", "bt")], {"momentum": strategy}, {"bt": backtest_environment()},
                             [tick(i, close) for i, close in enumerate(closes)])


def test_shipped_plugin_demo_runs_on_the_bundled_data(example_on_path, capsys):
    assert main([str(REPO / "config/operations/plugin_demo.yaml")]) == 0
    out, err = capsys.readouterr()
    assert "== momentum_plugin_demo@backtest_2023_q1 [completed]" in out
    summary = next(e for e in json_lines(err) if e["event"] == "strategy_summary")
    assert summary["ticks_processed"] == 2160 and summary["trades"] > 0


def test_import_path_workers_pass_their_dto_and_signal_on_to_the_built_in_ones(example_on_path, tmp_path, capsys):
    assert main([str(momentum_tree(tmp_path))]) == 0
    buys = [e for e in json_lines(capsys.readouterr().err) if e["event"] == "order_filled" and e["side"] == "buy"]
    # 5 candles after the rise began the close is up 4.06 % (3.03 % one candle earlier: below 3.5 %).
    assert buys[0]["candle_time"] == (START + timedelta(hours=33)).isoformat()
    assert buys[0]["reason"] == "momentum +4.06% over 5 candles"
    assert buys[0]["strategy_link"] == "momentum@bt"


def test_a_dto_the_plugin_requires_must_be_produced_first(example_on_path, tmp_path, capsys):
    strategy = blueprint({"opportunity": [{"plugin": ENTRY}]})
    path = write_config_tree(tmp_path, [("s", "bt")], {"s": strategy}, {"bt": backtest_environment()}, [tick(0, 1)])
    assert main([str(path)]) == 2
    blueprint_file = tmp_path / "config" / "strategies" / "s.yaml"
    assert (f"config error: {blueprint_file}: workforce.opportunity[0]: worker '{ENTRY}' requires MomentumDTO, "
            "which no earlier worker produces") in capsys.readouterr().err


@pytest.mark.parametrize(("category", "plugin", "params", "key", "reason"), [
    ("context", "no_such_package.workers:Thing", {}, "workforce.context[0].plugin",
     "no module named 'no_such_package' (install its package, or put its folder on PYTHONPATH)"),
    ("context", "{module}:Missing", {}, "workforce.context[0].plugin",
     "module 'sample_plugins' has no class 'Missing'"),
    ("context", "{module}:NotAWorker", {}, "workforce.context[0].plugin",
     "'sample_plugins:NotAWorker' is not a worker class (a subclass of IWorker)"),
    ("context", "{module}:Unfinished", {}, "workforce.context[0].plugin",
     "'sample_plugins:Unfinished' does not implement process"),
    ("threat", "{module}:ContextWorker", {}, "workforce.threat[0].plugin",
     "plugin 'sample_plugins:ContextWorker' is a context worker, not threat"),
    ("context", "{module}:ContextWorker", {"window": "wide"}, "workforce.context[0].params.window",
     "Input should be a valid integer"),
    ("context", "{module}:ContextWorker", {"windows": 3}, "workforce.context[0].params.windows",
     "Extra inputs are not permitted"),
])
def test_a_wrong_import_path_is_a_config_error_naming_file_and_key(
    sample_plugins, tmp_path, capsys, category, plugin, params, key, reason
):
    worker = {"plugin": plugin.format(module=sample_plugins), "params": params}
    path = write_config_tree(tmp_path, [("s", "bt")], {"s": blueprint({category: [worker]})},
                             {"bt": backtest_environment()}, [tick(0, 1)])
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    blueprint_file = tmp_path / "config" / "strategies" / "s.yaml"
    assert f"run-operation: config error: {blueprint_file}: {key}: {reason}" in err
    assert "Traceback" not in err


def test_a_plugin_module_that_fails_to_import_is_a_config_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_plugins.py").write_text("raise RuntimeError('half-installed dependency')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken_plugins", raising=False)
    strategy = blueprint({"context": [{"plugin": "broken_plugins:Anything"}]})
    path = write_config_tree(tmp_path, [("s", "bt")], {"s": strategy}, {"bt": backtest_environment()}, [tick(0, 1)])
    assert main([str(path)]) == 2
    assert ("workforce.context[0].plugin: importing module 'broken_plugins' failed: "
            "RuntimeError: half-installed dependency") in capsys.readouterr().err


@pytest.mark.parametrize("plugin", ["momentum_plugin.workers:", ":MomentumDetector", "a..b:C", "a.b:C.D", "a b:C"])
def test_a_malformed_plugin_name_is_refused_by_the_schema(tmp_path, capsys, plugin):
    strategy = blueprint({"context": [{"plugin": plugin}]})
    path = write_config_tree(tmp_path, [("s", "bt")], {"s": strategy}, {"bt": backtest_environment()}, [tick(0, 1)])
    assert main([str(path)]) == 2
    assert "workforce.context[0].plugin: String should match pattern" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["validate"], [], ["--processes", "2"]], ids=["validate", "run", "processes"])
def test_a_plugin_whose_constructor_raises_is_a_config_error_on_every_path(sample_plugins, tmp_path, capsys,
                                                                            command):
    fragile = blueprint({"context": [{"plugin": f"{sample_plugins}:Fragile"}]})
    sound = blueprint({"opportunity": [{"plugin": "dca_schedule_opportunity"}],
                       "planning": [{"plugin": "position_sizer"}]})
    path = write_config_tree(tmp_path, [("sound", "bt"), ("fragile", "bt")], {"sound": sound, "fragile": fragile},
                             {"bt": backtest_environment()}, [tick(i, 100 + i) for i in range(10)])
    validate, flags = command[:1] == ["validate"], command[1:] if command[:1] == ["validate"] else command
    assert main([*(["validate"] if validate else []), str(path), *flags]) == 2
    out, err = capsys.readouterr()
    blueprint_file = tmp_path / "config" / "strategies" / "fragile.yaml"
    assert (f"run-operation: config error: {blueprint_file}: workforce.context[0]: plugin "
            f"'{sample_plugins}:Fragile' could not be built: RuntimeError: its model file is missing") in err
    assert "Traceback" not in err and "OK" not in out and "strategy_run_started" not in err


def test_the_example_plugin_is_columnar_through_the_safe_default_and_trades_as_tick_by_tick(example_on_path):
    """Its opportunity worker names no rows (active on every row); its detector writes columns."""
    replay = assert_same_trades(lambda: Replay(blueprint_file=MOMENTUM_DEMO), sample_candles(), random_sizes(7))
    assert len(replay.fills) > 10
