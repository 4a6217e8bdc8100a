"""The image's command lines: the Dockerfile's ENTRYPOINT with its CMD, with docker-compose's
command, and with the subcommands a user types after the image name (`docker run IMAGE validate
FILE`, `docker run IMAGE sweep FILE`), each parsed by the real CLI (docker itself is not run)."""

import json
import tomllib

import pytest
import yaml

from services.cli import main, parse_args
from tests.helpers import REPO


def dockerfile_instruction(name: str) -> list[str]:
    """The JSON (exec) form of the Dockerfile's instruction `name` (ENTRYPOINT, CMD)."""
    (line,) = [line for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith(f"{name} ")]
    return json.loads(line.removeprefix(f"{name} "))


@pytest.fixture
def entrypoint() -> list[str]:
    """The ENTRYPOINT's arguments after the program, which must be the installed run-operation."""
    program, *arguments = dockerfile_instruction("ENTRYPOINT")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[program] == "services.cli:main"
    return arguments


def test_the_default_command_runs_the_operation_with_state_in_the_volume_and_the_status_server(entrypoint):
    args = parse_args([*entrypoint, *dockerfile_instruction("CMD")])
    assert args.command == "run" and (REPO / args.operation).is_file()
    assert str(args.data_dir) == "/app/var" and args.http == ("0.0.0.0", 8080)  # VOLUME, HEALTHCHECK
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["opdaemon"]
    assert parse_args([*entrypoint, *compose["command"]]) == args


def test_validate_after_the_image_name_validates(entrypoint, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the image's WORKDIR holds config/ and data/ as here
    assert main([*entrypoint, "validate", "config/operations/backtest_demo.yaml"]) == 0
    assert capsys.readouterr().out.startswith("run-operation: OK: config/operations/backtest_demo.yaml")


def test_sweep_after_the_image_name_is_the_sweep_command(entrypoint):
    args = parse_args([*entrypoint, "sweep", "config/sweeps/dca_grid.yaml"])
    assert args.command == "sweep" and (REPO / args.sweep).is_file()
