"""`run-operation new-plugin NAME --category C`: the files it writes, for every category, pass
`validate`, their own test under pytest (a separate process, as a user runs it) and a backtest
through the CLI on the bundled data; it refuses a NAME that is not an identifier and never
overwrites a file."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from backend.interfaces import IWorker, WorkerCategory
from tests.helpers import REPO

pytestmark = pytest.mark.e2e


def cli(*args: object, cwd: Path = REPO, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    path = os.pathsep.join(str(p) for p in (pythonpath, REPO) if p is not None)
    return subprocess.run([sys.executable, "-m", "services.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=50, env={**os.environ, "PYTHONPATH": path})


def files_of(name: str) -> list[str]:
    return [f"plugins/{name}.py", f"tests/test_{name}.py", f"config/strategies/{name}.yaml",
            f"config/operations/{name}_backtest.yaml"]


@pytest.mark.parametrize("category", ["opportunity", "context", "threat", "planning", "execution"])
def test_a_new_plugin_validates_passes_its_test_and_backtests(tmp_path, category):
    name = f"my_{category}"
    made = cli("new-plugin", name, "--category", category, "--dir", tmp_path)
    assert made.returncode == 0, made.stderr
    for file in files_of(name):
        assert (tmp_path / file).is_file(), file
        assert file in made.stdout
    spec = importlib.util.spec_from_file_location(name, tmp_path / "plugins" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (worker,) = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, IWorker)
                 and v.__module__ == name]
    assert worker.category is WorkerCategory(category) and worker.columnar
    operation = tmp_path / "config" / "operations" / f"{name}_backtest.yaml"

    checked = cli("validate", operation, pythonpath=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "run-operation: OK:" in checked.stdout

    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"tests/test_{name}.py"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=50,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])})
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert " passed" in tested.stdout and "failed" not in tested.stdout

    ran = cli(operation, "--timerange", "20230201-20230301", cwd=tmp_path, pythonpath=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert f"== {name}@" in ran.stdout and "[completed]" in ran.stdout
    assert '"backtest_replay"' in ran.stderr and '"mode": "columnar"' in ran.stderr


def test_the_opportunity_template_trades_on_the_sample(tmp_path):
    assert cli("new-plugin", "breakout", "--dir", tmp_path).returncode == 0  # opportunity by default
    ran = cli(tmp_path / "config" / "operations" / "breakout_backtest.yaml", pythonpath=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert '"event": "order_filled"' in ran.stderr


def test_it_writes_into_the_current_directory_by_default_and_never_overwrites(tmp_path):
    assert cli("new-plugin", "first", cwd=tmp_path).returncode == 0
    assert all((tmp_path / file).is_file() for file in files_of("first"))
    assert cli("new-plugin", "second", "--category", "context", cwd=tmp_path).returncode == 0  # shares the rest
    worker = tmp_path / "plugins" / "first.py"
    worker.write_text("# mine\n")
    again = cli("new-plugin", "first", "--category", "context", cwd=tmp_path)
    assert again.returncode == 2
    assert f"run-operation: new-plugin: {Path('plugins/first.py')} already exists: nothing was written" in again.stderr
    assert worker.read_text() == "# mine\n"
    assert "Traceback" not in again.stderr


@pytest.mark.parametrize("name", ["my-plugin", "2fast", "class", "Ünïcode"])
def test_a_name_that_is_not_a_python_identifier_exits_2(tmp_path, name):
    refused = cli("new-plugin", name, "--dir", tmp_path)
    assert refused.returncode == 2
    assert "new-plugin" in refused.stderr and "identifier" in refused.stderr
    assert not any(tmp_path.iterdir())


def test_installed_apart_from_the_data_it_finds_the_sample_in_the_current_folder_or_says_so(tmp_path):
    """The Docker image installs the package into site-packages and keeps data/ in /app, its
    working folder: the environment written points there; with no sample anywhere, exit 2."""
    site = tmp_path / "site"
    for package in ("backend", "services"):
        shutil.copytree(REPO / package, site / package, ignore=shutil.ignore_patterns("__pycache__"))
    app = tmp_path / "app"
    shutil.copytree(REPO / "data", app / "data")
    environment = tmp_path / "out" / "config" / "environments" / "sample_btc_usd_1h.yaml"

    def new_plugin(cwd: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "services.cli", "new-plugin", "brk", "--dir", str(tmp_path / "out")]
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=50,
                              env={**os.environ, "PYTHONPATH": str(site)})

    nowhere = new_plugin(tmp_path)
    assert nowhere.returncode == 2 and "bundled sample data" in nowhere.stderr and not environment.exists()
    made = new_plugin(app)
    assert made.returncode == 0, made.stderr
    assert yaml.safe_load(environment.read_text())["data_file"] == str(app / "data" / "kraken_xbtusd_1h_2023q1.csv")
