"""Loads an operation file and everything it names; every problem becomes a ConfigError.
A `--timerange` given is applied to every backtest environment as it is loaded (and kept, so a
reload applies it again).

A blueprint's timeframe is the environment's or a longer one its candles can be resampled to
(`resampling_problem`); anything else is an error on the operation file's link key. Only `true`
and `false` are booleans in these files (YAML 1.2): `yes`, `on`, `True` are text, so a switch the
schema takes strictly (`allow_live_orders`) can refuse them. A live environment is validated by
the settings model of the venue its `exchange:` names (backend.venues.VENUES). An inactive link's
files must exist; they are not loaded.
"""

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from backend.config.schema import (
    ENVIRONMENT_TYPES,
    BacktestEnvironment,
    EnvironmentConfig,
    LiveEnvironment,
    OperationConfig,
    StrategyBlueprint,
    StrategyLink,
)
from backend.config.timerange import Timerange
from backend.errors import ConfigError
from backend.market_data.detail_candles import detail_timeframe, detail_timeframe_problem
from backend.market_data.market_rules import MARKETS_FILE_NAME, load_market_rules
from backend.market_data.resample import resampling_problem
from backend.market_data.timeframes import timeframe_seconds
from backend.venues import VENUES, unknown_exchange

M = TypeVar("M", bound=BaseModel)
MORE_PROBLEM_KEYS_SHOWN = 3


class _Yaml12BooleansLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but `yes`/`no`/`on`/`off`/`True` are text (YAML 1.2 core booleans)."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_Yaml12BooleansLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12BooleansLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|false)$"), list("tf"))


@dataclass(frozen=True)
class ResolvedLink:
    """An active strategy link with its blueprint and environment loaded."""

    link: StrategyLink
    blueprint: StrategyBlueprint
    blueprint_file: Path
    environment: EnvironmentConfig
    environment_file: Path

    @property
    def link_id(self) -> str:
        return self.link.link_id


@dataclass(frozen=True)
class LoadedOperation:
    path: Path
    config: OperationConfig
    links: list[ResolvedLink]  # active links only, in file order
    timerange: Timerange | None = None  # --timerange, already applied to the backtest environments


def format_location(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, str) and part.startswith("<"):  # a union's tag (backend.config.sweep), not a key
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def read_yaml_mapping(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "file not found") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read file: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_Yaml12BooleansLoader)  # a SafeLoader: builds no objects
    except yaml.YAMLError as exc:
        where, problem = _yaml_problem(exc, len(text))
        raise ConfigError(path, f"invalid YAML: {problem}", key=where) from None
    if not isinstance(data, dict):
        raise ConfigError(path, "expected a mapping of keys at the top level")
    return data


def _yaml_problem(exc: yaml.YAMLError, length: int) -> tuple[str | None, str]:
    """(line N, what is wrong). A construct left open until the end of the file (an unclosed quote
    above all) is named where it opens: the end of the file tells nothing."""
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None) or ""
    if context_mark is not None and (problem_mark is None or problem_mark.index >= length):
        if context == "while scanning a quoted scalar":
            return f"line {context_mark.line + 1}", "this quote is never closed"
        return f"line {context_mark.line + 1}", f"{problem} {context} started on this line"
    return (f"line {problem_mark.line + 1}" if problem_mark else None), problem


def validate_model(model: type[M], data: dict, path: Path) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = _typos_first(exc.errors())
        first, others = errors[0], [format_location(tuple(error["loc"])) for error in errors[1:]]
        reason = first["msg"].removeprefix("Value error, ")
        if others:
            shown = ", ".join(others[:MORE_PROBLEM_KEYS_SHOWN])
            shown += ", …" if len(others) > MORE_PROBLEM_KEYS_SHOWN else ""
            reason += f" (and {len(others)} more problem{'s' if len(others) > 1 else ''} in this file: {shown})"
        raise ConfigError(path, reason, key=format_location(tuple(first["loc"]))) from None


def _typos_first(errors: list) -> list:
    """A required key reported missing next to an unknown key spelt like it is one typo: the
    unknown key is reported first, naming the key it should be, and the missing one is dropped."""
    missing = [error for error in errors if error["type"] == "missing"]
    for unknown in (error for error in errors if error["type"] == "extra_forbidden"):
        parent, name = tuple(unknown["loc"][:-1]), str(unknown["loc"][-1])
        siblings = {str(error["loc"][-1]): error for error in missing if tuple(error["loc"][:-1]) == parent}
        match = difflib.get_close_matches(name, list(siblings), n=1)
        if match:
            meant = {**unknown, "msg": f"unknown key; did you mean '{match[0]}'? (a required key)"}
            return [meant, *(error for error in errors if error is not unknown and error is not siblings[match[0]])]
    return errors


def load_yaml_model(model: type[M], path: Path) -> M:
    return validate_model(model, read_yaml_mapping(path), path)


def load_environment(path: Path, timerange: Timerange | None = None) -> EnvironmentConfig:
    """config/environments/<id>.yaml; a backtest's range is --timerange's where that gives one."""
    data = read_yaml_mapping(path)
    kind = data.get("type")
    if kind not in ENVIRONMENT_TYPES:
        raise ConfigError(path, f"must be one of {sorted(ENVIRONMENT_TYPES)}, got {kind!r}", "type")
    model: type[BacktestEnvironment] | type[LiveEnvironment] = ENVIRONMENT_TYPES[kind]
    if kind == "live" and "exchange" in data:  # the exchange's own keys are its venue's settings model's
        problem = unknown_exchange(data["exchange"])
        if problem is not None:
            raise ConfigError(path, problem, "exchange")
        model = VENUES[data["exchange"]].settings()
    env = validate_model(model, data, path)
    if isinstance(env, BacktestEnvironment):
        env = _data_files_checked(path, env)
        if env.detail_data_file is not None:
            env = env.model_copy(update={"detail_data_file": _detail_data_file(path, env)})
        env = env.model_copy(update={"markets_file": _markets_file(path, env)})
        if timerange is not None:
            env = timerange.applied_to(env, path.stem)
    return env


def _data_files_checked(path: Path, env: BacktestEnvironment) -> BacktestEnvironment:
    """The environment with its data files resolved beside its file, each of them there (a
    pattern is resolved as a pattern: each symbol's file it names is checked)."""
    if env.data_files is not None:
        return env.model_copy(update={"data_files": {
            symbol: _data_file(path, data_file, f"data_files.{symbol}") for symbol, data_file in env.data_files.items()
        }})
    assert env.data_file is not None
    env = env.model_copy(update={"data_file": (path.parent / env.data_file).resolve()})
    if env.symbol is None:  # a pattern, perhaps: the file of each symbol, named
        for symbol in env.symbols:
            _data_file(path, env.data_file_of(symbol), "data_file", f"data file of {symbol}")
    else:
        _data_file(path, env.data_file_of(env.symbol), "data_file")
    return env


def _data_file(path: Path, data_file: Path, key: str, what: str = "data file") -> Path:
    """A data file named by an environment file: resolved beside it, and there."""
    data_file = (path.parent / data_file).resolve()
    if data_file.is_dir():
        raise ConfigError(path, f"{what} is a directory, not a CSV file: {data_file}", key)
    if not data_file.exists():
        raise ConfigError(path, f"{what} not found: {data_file}", key)
    if not data_file.is_file():
        raise ConfigError(path, f"{what} is not a regular file: {data_file}", key)
    return data_file


def _markets_file(path: Path, env: BacktestEnvironment) -> Path | None:
    """The markets file a backtest's orders are ruled by (its `markets_file`, else the markets.json
    beside its (first symbol's) data file, else none), read and checked: market rules for every
    symbol it trades."""
    if env.markets_file is not None:
        markets_file = _data_file(path, env.markets_file, "markets_file")
    else:
        markets_file = env.data_file_of(env.symbols[0]).parent / MARKETS_FILE_NAME
        if not markets_file.is_file():
            return None
    markets = load_market_rules(markets_file).markets
    missing = [symbol for symbol in env.symbols if symbol not in markets]
    if missing:
        raise ConfigError(markets_file, f"no market {', '.join(missing)}, which {path.name} trades (it has "
                                        f"{', '.join(sorted(markets))})", "markets")
    return markets_file


def _detail_data_file(path: Path, env: BacktestEnvironment) -> Path:
    """The detail file, there and of a timeframe that divides the environment's into finer candles
    (its first rows tell: the readers refuse a file they cannot read, naming it)."""
    assert env.detail_data_file is not None
    detail_file = _data_file(path, env.detail_data_file, "detail_data_file")
    problem = detail_timeframe_problem(detail_timeframe(detail_file), env.timeframe)
    if problem is not None:
        raise ConfigError(path, problem, "detail_data_file")
    return detail_file


def referenced_file(
    operation_path: Path, folder: Path, item_id: str, kind: str, key: str
) -> Path:
    path = folder / f"{item_id}.yaml"
    if not path.is_file():
        raise ConfigError(operation_path, f"unknown {kind} '{item_id}': no file {path}", key)
    return path


def load_operation(path: Path | str, timerange: Timerange | None = None) -> LoadedOperation:
    """Load config/operations/<name>.yaml; blueprints and environments are looked up in the
    sibling folders config/strategies/ and config/environments/."""
    path = Path(path)
    operation = load_yaml_model(OperationConfig, path)
    config_root = path.resolve().parent.parent
    links: list[ResolvedLink] = []
    for index, link in enumerate(operation.strategy_links):
        key = f"strategy_links[{index}]"
        # An inactive link's files must exist too (activating it must not be the way to find out).
        blueprint_file = referenced_file(
            path, config_root / "strategies", link.strategy_blueprint_id,
            "strategy blueprint", f"{key}.strategy_blueprint_id",
        )
        environment_file = referenced_file(
            path, config_root / "environments", link.execution_environment_id,
            "execution environment", f"{key}.execution_environment_id",
        )
        if not link.is_active:
            continue
        blueprint = load_yaml_model(StrategyBlueprint, blueprint_file)
        environment = load_environment(environment_file, timerange)
        check_compatible(path, key, blueprint, environment)
        links.append(ResolvedLink(link, blueprint, blueprint_file, environment, environment_file))
    return LoadedOperation(path, operation, links, timerange)


def check_compatible(
    path: Path, key: str, blueprint: StrategyBlueprint, environment: EnvironmentConfig
) -> None:
    # The environment streams its own timeframe; a blueprint's longer one is resampled from it.
    timeframe_problem = resampling_problem(environment.timeframe, blueprint.timeframe)
    if timeframe_problem is not None:
        raise ConfigError(path, f"blueprint {timeframe_problem}", key)
    if (isinstance(environment, BacktestEnvironment) and environment.several_symbols
            and timeframe_seconds(blueprint.timeframe) != timeframe_seconds(environment.timeframe)):
        raise ConfigError(path, f"blueprint timeframe {blueprint.timeframe} differs from the environment's "
                          f"{environment.timeframe}: a backtest of several symbols is not resampled yet "
                          "(use the environment's timeframe)", key)
    missing = [asset for asset in blueprint.assets if asset not in environment.symbols]
    if missing:
        raise ConfigError(
            path,
            f"blueprint trades {', '.join(missing)}, which the environment does not provide "
            f"(it provides {', '.join(environment.symbols)})",
            key,
        )
