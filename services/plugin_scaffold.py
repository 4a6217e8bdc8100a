"""`run-operation new-plugin NAME --category C [--dir DIR]`: a first worker plugin, ready to run.

Writes, under DIR: `plugins/NAME.py` (the worker), `tests/test_NAME.py` (its test, on
services.plugin_testing), `config/strategies/NAME.yaml` (a blueprint naming it by import path,
`plugins.NAME:ClassName`), `config/operations/NAME_backtest.yaml` and the environment it runs on,
`config/environments/sample_btc_usd_1h.yaml` (the bundled Q1 2023 sample, by absolute path).

Invariant: nothing is ever overwritten: a file that exists stops the command before anything is
written (ScaffoldError naming it), except the shared sample environment when it already holds
exactly what would be written. What is written passes `validate`, its own test and a backtest.
"""

import keyword
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import yaml

from services.plugin_templates import PLUGIN, TEMPLATES, WORKFORCES
from services.plugin_testing import SAMPLE_1H

CATEGORIES = tuple(TEMPLATES)
SAMPLE_ENVIRONMENT = "sample_btc_usd_1h"
SHARED_ENVIRONMENT_FILE = Path("config") / "environments" / f"{SAMPLE_ENVIRONMENT}.yaml"  # every plugin's


class ScaffoldError(Exception):
    """Nothing was written; the message says why."""


def plugin_name_problem(name: str) -> str | None:
    """Why NAME cannot name a plugin module (None: it can)."""
    if not (name.isascii() and name.isidentifier()) or keyword.iskeyword(name):
        return f"{name!r} is not a Python identifier (letters, digits and _, not starting with a digit, not a keyword)"
    if name.startswith("__"):  # __init__, __main__: a package's own modules, not a plugin's
        return f"{name!r} is a name Python keeps for itself (it starts with __)"
    return None


@dataclass(frozen=True)
class NewPlugin:
    name: str
    category: str

    @property
    def class_name(self) -> str:
        return "".join(part[:1].upper() + part[1:] for part in self.name.split("_")) or "Worker"

    @property
    def import_path(self) -> str:
        return f"plugins.{self.name}:{self.class_name}"

    @property
    def operation_file(self) -> Path:
        return Path("config") / "operations" / f"{self.name}_backtest.yaml"

    def files(self) -> dict[Path, str]:
        """Each file's path (relative to the target folder) and text, in the order they are listed."""
        worker, test = (Template(text).substitute(name=self.name, class_name=self.class_name)
                        for text in TEMPLATES[self.category])
        return {
            Path("plugins") / f"{self.name}.py": worker,
            Path("tests") / f"test_{self.name}.py": test,
            Path("config") / "strategies" / f"{self.name}.yaml": self._blueprint(),
            self.operation_file: _operation(self.name),
            SHARED_ENVIRONMENT_FILE: _sample_environment(),
        }

    def _blueprint(self) -> str:
        workforce = {category: [{"plugin": self.import_path} if spec == PLUGIN else spec for spec in specs]
                     for category, specs in WORKFORCES[self.category].items()}
        blueprint = {
            "display_name": f"{self.name} ({self.category} plugin)",
            "description": f"The {self.category} worker plugins/{self.name}.py, named by import path.",
            "assets": ["BTC/USD"],
            "timeframe": "1h",
            "workforce": workforce,
        }
        return (f"# Written by run-operation new-plugin: the worker {self.import_path} in a workforce that trades.\n"
                + _yaml(blueprint))


PYTEST_CONFIG_FILES = ("pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")
PYTEST_INI = "[pytest]\ntestpaths = tests\nasyncio_default_fixture_loop_scope = function\n"


def write_plugin(plugin: NewPlugin, directory: Path) -> list[Path]:
    """Write plugin's files under directory; the paths written (relative to it). ScaffoldError,
    with nothing written, when one exists already."""
    files = plugin.files()
    if not any((directory / name).exists() for name in PYTEST_CONFIG_FILES):
        # Its tests then run with a pytest config of their own, which pytest-asyncio (in the dev
        # extra) otherwise greets with a deprecation warning, the first thing a newcomer would see.
        files[Path("pytest.ini")] = PYTEST_INI
    for path, text in list(files.items()):
        target = directory / path
        if path == SHARED_ENVIRONMENT_FILE and target.is_file() and target.read_text(encoding="utf-8") == text:
            del files[path]  # written for an earlier plugin, as it would be now
        elif target.exists():
            raise ScaffoldError(f"{path} already exists: nothing was written")
    for path, text in files.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return list(files)


def _operation(name: str) -> str:
    operation = {
        "display_name": f"{name} backtest",
        "description": "The plugin's blueprint on the bundled sample: Kraken BTC/USD hourly, Q1 2023.",
        "strategy_links": [{"strategy_blueprint_id": name, "execution_environment_id": SAMPLE_ENVIRONMENT,
                            "is_active": True}],
    }
    return (f"# PYTHONPATH=. run-operation config/operations/{name}_backtest.yaml"
            f"  (from the folder above plugins/)\n" + _yaml(operation))


def _sample_environment() -> str:
    if not SAMPLE_1H.is_file():
        raise ScaffoldError(f"the bundled sample data ({SAMPLE_1H.name}) is neither beside the installed package "
                            "nor in ./data: run it from a checkout of opdaemon (or /app in its Docker image)")
    environment = {
        "type": "backtest",
        "display_name": "Kraken BTC/USD hourly, Q1 2023 (the bundled sample)",
        "data_file": str(SAMPLE_1H),
        "symbol": "BTC/USD",
        "timeframe": "1h",
        "start": "2023-01-01T00:00:00Z",
        "end": "2023-04-01T00:00:00Z",
        "starting_capital": 10000,
        "fee_rate": 0.0026,
        "slippage_bps": 2,
    }
    return _yaml(environment)


def _yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
