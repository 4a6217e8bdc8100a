"""--log-dir: one JSON-lines file per strategy link plus daemon.jsonl, rotated by size, beside stderr."""

import json
from pathlib import Path

import pytest

from services.cli import main
from services.logging_setup import log_file_name
from tests.helpers import REPO

DEMO = str(REPO / "config/operations/backtest_demo.yaml")
ICT, DCA = "ict_smc_strategy@backtest_2023_q1", "smart_dca_btc@backtest_2023_q1"


def lines_of(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def belongs_to(event: dict, link: str) -> bool:
    return event.get("strategy_link") == link or link in event.get("strategy_links", [])


def stderr_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("{")]


def test_each_link_file_has_only_its_lines_and_the_daemon_file_the_rest(tmp_path, capsys):
    log_dir = tmp_path / "logs" / "nested"  # created on demand
    assert main([DEMO, "--log-dir", str(log_dir)]) == 0
    _, err = capsys.readouterr()
    assert sorted(p.name for p in log_dir.iterdir()) == sorted(["daemon.jsonl", f"{ICT}.jsonl", f"{DCA}.jsonl"])
    for link in (ICT, DCA):
        events = [json.loads(line) for line in lines_of(log_dir / f"{link}.jsonl")]
        assert all(belongs_to(e, link) for e in events)
        assert any(e["event"] == "order_filled" for e in events)
        assert [e["event"] for e in events if e["event"] == "strategy_summary"] == ["strategy_summary"]
    daemon = [json.loads(line) for line in lines_of(log_dir / "daemon.jsonl")]
    assert all("strategy_link" not in e for e in daemon)
    names = [e["event"] for e in daemon]
    for lifecycle in ("operation_loading", "operation_started", "operation_finished"):
        assert lifecycle in names
    assert "order_filled" not in names
    # stderr still has every line, and the files hold exactly the lines stderr has, byte for byte
    in_files = {line for p in log_dir.iterdir() for line in lines_of(p)}
    assert set(stderr_lines(err)) == in_files
    # a feed line (strategy_links) is in both link files and in the daemon file
    feed = next(line for line in lines_of(log_dir / "daemon.jsonl") if '"environment_feed_started"' in line)
    assert feed in lines_of(log_dir / f"{ICT}.jsonl") and feed in lines_of(log_dir / f"{DCA}.jsonl")


def test_files_are_json_lines_even_when_stderr_is_console(tmp_path, capsys):
    assert main([DEMO, "--log-dir", str(tmp_path), "--log-format", "console"]) == 0
    _, err = capsys.readouterr()
    assert "order_filled" in err and not stderr_lines(err)
    events = [json.loads(line) for line in lines_of(tmp_path / f"{DCA}.jsonl")]
    assert any(e["event"] == "order_filled" for e in events)


def test_files_rotate_at_the_size_limit_keeping_the_backups(tmp_path, capsys):
    limit = 4000
    assert main([DEMO, "--log-dir", str(tmp_path), "--log-max-bytes", str(limit), "--log-backups", "2"]) == 0
    _, err = capsys.readouterr()
    for link in (ICT, DCA):
        base = tmp_path / f"{link}.jsonl"
        generations = [Path(f"{base}.2"), Path(f"{base}.1"), base]  # oldest first
        assert all(p.is_file() for p in generations)
        assert not Path(f"{base}.3").exists()
        for path in generations:
            assert 0 < path.stat().st_size < limit
        kept = [line for path in generations for line in lines_of(path)]
        events = [json.loads(line) for line in kept]
        assert all(belongs_to(e, link) for e in events)
        everything = [line for line in stderr_lines(err) if belongs_to(json.loads(line), link)]
        assert len(everything) > len(kept) and set(kept) < set(everything)  # the oldest were rotated out
        assert everything[0] not in kept  # operation_started, the first of them
        summary = next(line for line in everything if '"strategy_summary"' in line)
        assert summary in lines_of(base)  # the newest are in the current file


def test_an_unwritable_log_dir_is_a_config_error(tmp_path, capsys):
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the directory should be")
    assert main([DEMO, "--log-dir", str(blocker)]) == 2
    out, err = capsys.readouterr()
    assert f"run-operation: config error: --log-dir {blocker}:" in err
    assert "Strategy run summaries" not in out and "Traceback" not in err
    assert blocker.read_text() == "a file where the directory should be"


def test_a_file_failing_mid_run_is_dropped_and_the_daemon_runs_on(tmp_path, capsys):
    # The DCA file's first rotation cannot remove the backup in its way (a directory): its write fails.
    (tmp_path / f"{DCA}.jsonl.1").mkdir()
    assert main([DEMO, "--log-dir", str(tmp_path), "--log-max-bytes", "90000", "--log-backups", "1"]) == 0
    out, err = capsys.readouterr()
    assert f"== {DCA} [completed]" in out and f"== {ICT} [completed]" in out
    events = [json.loads(line) for line in stderr_lines(err)]
    (unavailable,) = [e for e in events if e["event"] == "log_file_unavailable"]  # reported once
    assert unavailable["path"] == str(tmp_path / f"{DCA}.jsonl") and unavailable["level"] == "error"
    assert "strategy_link" not in unavailable and "strategy_links" not in unavailable  # a daemon line
    dca_written = lines_of(tmp_path / f"{DCA}.jsonl")
    dca_all = [json.dumps(e) for e in events if belongs_to(e, DCA)]
    assert 0 < len(dca_written) < len(dca_all)  # written until the failure, not after
    ict_all = [line for line in stderr_lines(err) if belongs_to(json.loads(line), ICT)]
    # the other files go on, complete (two threads may write theirs to a file and stderr in either order;
    # the ICT run logs enough to rotate its own file once, into its one backup)
    ict_written = lines_of(tmp_path / f"{ICT}.jsonl.1") + lines_of(tmp_path / f"{ICT}.jsonl")
    assert sorted(ict_written) == sorted(ict_all)
    daemon = [json.loads(line)["event"] for line in lines_of(tmp_path / "daemon.jsonl")]
    assert "log_file_unavailable" in daemon and daemon[-1] == "operation_finished"


def test_validate_ignores_the_log_dir(tmp_path, capsys):
    assert main(["validate", DEMO, "--log-dir", str(tmp_path / "logs")]) == 0
    assert "OK" in capsys.readouterr().out
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("link, name", [
    ("ict_smc_strategy@live_kraken_main", "ict_smc_strategy@live_kraken_main.jsonl"),
    ("a/b@c d", "a_b@c_d.jsonl"),
    ("../x@y", ".._x@y.jsonl".replace("..", "_..", 1)),
    ("daemon", "_daemon.jsonl"),
])
def test_file_names_are_filesystem_safe(link, name):
    assert log_file_name(link) == name


def test_files_mask_secrets_and_show_no_locals_in_tracebacks(tmp_path, capsys):
    import structlog

    from services.logging_setup import LogFiles, configure_logging

    files = LogFiles(tmp_path, 1_000_000, 1)
    configure_logging("console", "info", files=files)
    log = structlog.get_logger().bind(strategy_link="s@e")
    try:
        api_secret = "hunter2-not-a-real-secret"
        raise RuntimeError(f"boom ({len(api_secret)})")
    except RuntimeError:
        log.exception("strategy_run_failed", api_key="abc-not-a-real-key")
    files.close()
    capsys.readouterr()
    text = (tmp_path / "s@e.jsonl").read_text()
    (event,) = [json.loads(line) for line in text.splitlines()]
    assert event["api_key"] == "***" and event["exception"][0]["exc_value"] == "boom (25)"
    assert "hunter2" not in text and "abc-not-a-real-key" not in text
    assert (tmp_path / "daemon.jsonl").read_text() == ""
