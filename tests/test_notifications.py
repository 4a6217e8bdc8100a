"""Notifications through apprise to a real local HTTP receiver (one that answers, one that accepts
and never answers, one that refuses): the operation file's `notifications:` checked at load, the
notifier's queue, rate limit and failures in this process, and a paper daemon against the fake
Kraken whose fills reach the receiver within a second and whose trades no receiver changes."""

import io
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import get_args

import pytest
import structlog

from backend.config import load_operation
from backend.config.schema import NotificationEvent
from services import notifications
from services.cli import main
from services.logging_setup import configure_logging
from services.notifications import LOG_EVENTS, Notifier, resolve_targets
from tests.daemon import Daemon
from tests.fake_kraken import FakeKraken
from tests.helpers import backtest_environment, ticks_from_closes, write_config_tree
from tests.test_lifecycle_daemon import paper_settings
from tests.test_restart import CREDENTIALS, Minutes, dca_blueprint, wait_for

URL_ENV = "OPDAEMON_TEST_NOTIFY_URL"
SECRET_PASSWORD, SECRET_TOKEN = "pw-NOTIFY-SECRET-1", "hook-NOTIFY-TOKEN-2"


class Receiver:
    """A webhook on 127.0.0.1. answer: records (wall-clock arrival, JSON body) of each POST and
    answers 200; hang: accepts connections and never answers; refuse: nothing listens."""

    def __init__(self, mode: str = "answer") -> None:
        self.received: list[tuple[float, dict]] = []
        self._arrived = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        if mode == "answer":
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
            self.port = self._server.server_address[1]
            threading.Thread(target=self._server.serve_forever, daemon=True).start()
        else:
            self._socket = socket.socket()
            self._socket.bind(("127.0.0.1", 0))
            if mode == "hang":
                self._socket.listen(64)  # the kernel completes connections; nobody reads them
            self.port = self._socket.getsockname()[1]

    @property
    def url(self) -> str:
        """An apprise JSON webhook URL, with a password and a path token that must never be shown."""
        return f"json://user:{SECRET_PASSWORD}@127.0.0.1:{self.port}/{SECRET_TOKEN}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.time()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver._arrived:  # before the answer: the sender knows it arrived once answered
                    receiver.received.append((arrived, body))
                    receiver._arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        return Handler

    def wait_for(self, count: int, timeout: float = 10) -> list[tuple[float, dict]]:
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"{count} notifications not received within {timeout} s: {self.received}")
            return list(self.received)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        else:
            self._socket.close()


@pytest.fixture
def receivers() -> Iterator:
    made: list[Receiver] = []

    def make(mode: str = "answer") -> Receiver:
        made.append(Receiver(mode))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def backtest_operation(root: Path, **target: object) -> Path:
    return write_config_tree(root, [("p", "bt")], {"p": {**dca_blueprint(), "timeframe": "1h"}},
                             {"bt": backtest_environment()},
                             ticks=ticks_from_closes([100.0] * 5),
                             operation_settings={"notifications": [{"url_env": URL_ENV, **target}]})


def json_lines(text: str) -> list[dict]:
    """Every line parsed as JSON (fails on any other line, e.g. a traceback or apprise's own)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- the operation file ----------------------------------------------------------------------


def test_every_event_name_of_the_file_has_a_log_event_behind_it():
    assert sorted(LOG_EVENTS.values()) == sorted(get_args(NotificationEvent))


def test_an_unknown_event_name_is_a_config_error_at_its_index(tmp_path, capsys):
    operation = backtest_operation(tmp_path, events=["fill", "run_failed", "fills"])
    assert main(["validate", str(operation)]) == 2
    _, err = capsys.readouterr()
    assert f"{operation}: notifications[0].events[2]: Input should be 'fill'" in err


def test_an_unset_variable_or_a_value_apprise_refuses_is_a_config_error_naming_the_variable(
        tmp_path, capsys, monkeypatch):
    operation = backtest_operation(tmp_path)
    monkeypatch.delenv(URL_ENV, raising=False)
    for command in (["validate", str(operation)], [str(operation)]):
        assert main(command) == 2
        _, err = capsys.readouterr()
        assert f"{operation}: notifications[0].url_env: environment variable {URL_ENV} is not set or empty" in err

    monkeypatch.setenv(URL_ENV, f"nosuchservice://{SECRET_TOKEN}")
    for command in (["validate", str(operation)], [str(operation)]):
        assert main(command) == 2
        out, err = capsys.readouterr()
        assert f"environment variable {URL_ENV} does not hold a URL apprise accepts" in err
        assert SECRET_TOKEN not in out + err


def test_print_config_shows_the_variable_never_the_url(tmp_path, capsys, monkeypatch, receivers):
    monkeypatch.setenv(URL_ENV, receivers().url)
    assert main([str(backtest_operation(tmp_path, events=["fill"])), "--print-config", "json"]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out)["operation"]["notifications"] == [
        {"url_env": URL_ENV, "events": ["fill"], "max_per_minute": 20, "timeout_seconds": 5.0}]
    assert SECRET_TOKEN not in out and SECRET_PASSWORD not in out


def test_an_operation_of_backtests_only_notifies_nobody_and_says_so(tmp_path, capsys, monkeypatch, receivers):
    receiver = receivers()
    monkeypatch.setenv(URL_ENV, receiver.url)
    assert main([str(backtest_operation(tmp_path))]) == 0
    _, err = capsys.readouterr()
    (ignored,) = [line for line in json_lines(err) if line["event"] == "option_ignored"]
    assert ignored["option"] == "notifications" and "no live or paper link" in ignored["reason"]
    time.sleep(0.2)
    assert receiver.received == []  # not even daemon_started: a replay is not news


# --- the notifier in this process ------------------------------------------------------------


@pytest.fixture
def notifier_for(tmp_path) -> Iterator:
    """notifier_for(url, **target settings): a started Notifier, logging to a StringIO (returned too)."""
    started: list[Notifier] = []

    def make(url: str, **target: object) -> tuple[Notifier, io.StringIO]:
        operation = load_operation(backtest_operation(tmp_path, **target))
        stream = io.StringIO()
        configure_logging(stream=stream)
        notifier = Notifier("test operation", resolve_targets(operation, {URL_ENV: url}), flush_seconds=1,
                            backtest_environments=frozenset({"bt"}))
        notifier.start()
        started.append(notifier)
        return notifier, stream

    yield make
    for notifier in started:
        notifier.close()


def log_fill(index: int, environment: str = "paper") -> float:
    """An `order_filled` line as a run's executor logs it; how long the call took."""
    began = time.perf_counter()
    structlog.get_logger("test").info("order_filled", strategy_link=f"p@{environment}", environment=environment,
                                      asset="BTC/USD", side="buy", quantity=0.002, price=50_000.0,
                                      order_id=f"order-{index}")
    return time.perf_counter() - began


def wait_for_line(stream: io.StringIO, event: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [line for line in json_lines(stream.getvalue()) if line["event"] == event]
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError(f"no {event} within {timeout} s:\n{stream.getvalue()}")


@pytest.mark.slow
def test_a_routed_event_is_sent_and_beyond_the_rate_limit_one_summary_follows(notifier_for, receivers, monkeypatch):
    monkeypatch.setattr(notifications, "RATE_WINDOW_SECONDS", 1.0)
    receiver = receivers()
    notifier_for(receiver.url, events=["fill"], max_per_minute=2)
    structlog.get_logger("test").error("strategy_run_failed", error="not routed to this target")
    log_fill(-1, environment="bt")  # a backtest's replayed fills are not news
    for index in range(5):
        log_fill(index)
    sent = receiver.wait_for(2)
    assert [body["title"] for _, body in sent] == ["test operation: fill"] * 2
    assert "order_filled" in sent[0][1]["message"] and "order_id=order-0" in sent[0][1]["message"]
    assert sent[0][1]["type"] == "success"
    (_, summary), = receiver.wait_for(3)[2:]  # once the window has room again
    assert summary["title"] == "test operation: notifications held back"
    assert summary["message"].startswith("3 notifications held back by max_per_minute 2: fill x3")
    time.sleep(0.3)
    assert len(receiver.received) == 3  # neither the failed run nor the backtest's fill was sent


@pytest.mark.slow
def test_a_hanging_receiver_never_delays_the_logging_thread_and_a_full_queue_drops_the_oldest(
        notifier_for, receivers, monkeypatch):
    monkeypatch.setattr(notifications, "QUEUE_SIZE", 3)
    _, stream = notifier_for(receivers("hang").url, timeout_seconds=2)
    durations = [log_fill(index) for index in range(10)]
    assert max(durations) < 0.5  # a queue append, never a send (which hangs for its 2 s timeout)
    dropped = wait_for_line(stream, "notification_dropped")
    assert dropped["target"] == URL_ENV and dropped["reason"] == "queue_full" and dropped["dropped"] >= 6
    failed = wait_for_line(stream, "notification_failed")
    assert failed["target"] == URL_ENV and failed["notification"] == "fill"


def test_a_refused_send_is_logged_naming_the_variable_without_the_url_or_a_traceback(notifier_for, receivers):
    _, stream = notifier_for(receivers("refuse").url)
    log_fill(0)
    failed = wait_for_line(stream, "notification_failed")
    assert (failed["level"], failed["target"], failed["notification"]) == ("warning", URL_ENV, "fill")
    assert "connection error" in failed["error"].lower()  # apprise's reason, the URL's parts masked:
    assert "127.0.0.1" not in failed["error"]  # a host may be a token (tgram://TOKEN/CHAT)
    assert SECRET_TOKEN not in stream.getvalue() and SECRET_PASSWORD not in stream.getvalue()
    assert "Traceback" not in stream.getvalue()


# --- a paper daemon ---------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["answer", "hang", "refuse"])
def test_paper_fills_reach_the_receiver_within_a_second_and_no_receiver_changes_a_trade(
        tmp_path, fake: FakeKraken, receivers, mode):
    receiver = receivers(mode)
    operation = write_config_tree(
        tmp_path, [("dca", "live")], {"dca": dca_blueprint()}, {"live": paper_settings(fake)},
        operation_settings={"shutdown_timeout_seconds": 1,
                            "notifications": [{"url_env": URL_ENV, "timeout_seconds": 30}]})
    minutes = Minutes(fake, 4)  # rows 0-2 closed: a fresh start trades row 2
    daemon = Daemon([str(operation), "--data-dir", str(tmp_path / "state")], module="tests.fast_cli",
                    env={**CREDENTIALS, URL_ENV: receiver.url})
    try:
        wait_for(daemon, "order_filled")
        minutes.add()  # row 3 closes
        fills = wait_for(daemon, "order_filled", count=2)
        stop_sent = daemon.signal(signal.SIGTERM)
        code, _ = daemon.finish()
        stop_took = time.monotonic() - stop_sent
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
    assert code == 0
    assert [fill["candle_time"] for fill in fills] == [minutes.time(2), minutes.time(3)]
    # The flush takes at most shutdown_timeout_seconds (1 s), a send in flight or not: not a hanging
    # send's 30 s timeout (the margin is for a loaded machine).
    assert stop_took < 1 + 10
    lines = json_lines(daemon.stderr)  # every line JSON: nothing from apprise, no traceback
    assert SECRET_TOKEN not in daemon.stderr and SECRET_PASSWORD not in daemon.stderr
    if mode != "answer":  # refused: each send fails at once; hanging: the first is still waiting at the exit
        expected = "notification_failed" if mode == "refuse" else "notifications_not_flushed"
        assert any(line["event"] == expected and line["target"] == URL_ENV for line in lines)
        return
    sent = receiver.received
    titles = [body["title"] for _, body in sent]
    assert titles == ["test operation: daemon_started", "test operation: fill", "test operation: fill",
                      "test operation: daemon_stopped"]
    for fill, (arrived, body) in zip(fills, sent[1:3], strict=True):
        assert f"candle_time={fill['candle_time']}" in body["message"]
        assert arrived - datetime.fromisoformat(fill["timestamp"]).timestamp() < 1.0
