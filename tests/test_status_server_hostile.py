"""The status server against hostile or broken clients, over real sockets: idle and slow-header
connections, a process at its file descriptor limit, bytes that are not UTF-8 and requests that
are not HTTP. Whatever they send, /healthz answers within a second, every answer is JSON without
the request echoed or a version disclosed, and stderr stays JSON lines."""

import errno
import http.client
import io
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from services import status_server
from services.logging_setup import configure_logging
from services.status_server import StatusServer
from tests.daemon import Daemon
from tests.fake_kraken import FakeKraken
from tests.probes import probe_blueprint
from tests.test_lifecycle_daemon import TOKEN, TOKEN_ENV, paper_operation
from tests.test_restart import CREDENTIALS, FAST_CLI, Minutes, dca_blueprint, stop, wait_for
from tests.test_status_server import Client, GatedSource, gated_service, serving  # noqa: F401 (fixture)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def raw_request(port: int, data: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Send data as it is on a new connection; (status, headers, body) of the answer."""
    with connect(port) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.headers, response.read()


# /healthz answers at once: well within this, which is half the 10 s idle timeout hostile
# clients could otherwise hold it for (the margin is for a loaded machine).
HEALTHZ_SECONDS = 5


def healthz_seconds(port: int) -> float:
    """How long GET /healthz takes on a new connection; it must answer 200."""
    started = time.monotonic()
    status, _, body = raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    return time.monotonic() - started


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closed sock, waiting up to `within` seconds (0: as things are now)."""
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except (TimeoutError, BlockingIOError):
        return False
    except ConnectionResetError:
        return True


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


@pytest.fixture
def listening(tmp_path) -> Iterator[Callable[..., StatusServer]]:
    """listen(**settings): a status server with these settings beside an idle operation."""
    servers: list[StatusServer] = []

    def listen(**settings: Any) -> StatusServer:
        service = gated_service(tmp_path, {"good": probe_blueprint("g")}, GatedSource())
        servers.append(StatusServer(service, "127.0.0.1", 0, **settings))
        servers[-1].start()
        return servers[-1]

    yield listen
    for server in servers:
        server.stop()


def test_idle_and_slow_header_connections_are_closed_after_the_idle_timeout(listening, sockets):
    server = listening(idle_timeout=0.3)
    idle = connect(server.port)
    slow = connect(server.port)
    sockets += [idle, slow]
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the end of the header
    for _ in range(3):
        time.sleep(0.1)
        slow.sendall(b"X-Slow: 1\r\n")  # a byte now and then does not keep it open
    assert closed_by_server(idle, within=10)  # at once after 0.3 s; the margin is for a loaded machine
    assert closed_by_server(slow, within=10)
    assert healthz_seconds(server.port) < HEALTHZ_SECONDS


def test_more_connections_than_the_cap_close_the_oldest_idle_ones_and_healthz_answers(listening, sockets):
    server = listening(max_connections=8)
    sockets += [connect(server.port) for _ in range(40)]
    for sock in sockets[20:]:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # slow headers
    assert healthz_seconds(server.port) < HEALTHZ_SECONDS
    time.sleep(0.3)
    closed = [closed_by_server(sock, within=0) for sock in sockets]
    # The oldest were closed; a batch of connections accepted at once may exceed the cap briefly.
    assert closed == sorted(closed, reverse=True) and closed.count(False) <= 8 + status_server.ACCEPT_BACKLOG


@pytest.mark.e2e
def test_at_the_fd_limit_idle_clients_do_not_stop_healthz_and_stderr_stays_json(tmp_path, fake: FakeKraken, sockets):
    """The daemon limited to 128 file descriptors (it needs about 11), 120 idle and 30 slow-header
    connections."""
    operation = paper_operation(tmp_path, fake, {"dca": dca_blueprint()})
    Minutes(fake, 4)
    daemon = Daemon([str(operation), "--data-dir", str(tmp_path / "state"), "--http", "127.0.0.1:0"],
                    module=FAST_CLI, prefix=["prlimit", "--nofile=128"], env={**CREDENTIALS, TOKEN_ENV: TOKEN})
    try:
        (listening,) = wait_for(daemon, "status_server_started")
        port = listening["port"]
        for index in range(150):
            sock = connect(port)
            if index >= 120:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            sockets.append(sock)
        time.sleep(0.5)
        assert healthz_seconds(port) < HEALTHZ_SECONDS
        status, body = Client(port).json("/strategies/dca@live")
        assert status == 200 and body["status"] == "running"  # type: ignore[index]
        stop(daemon)
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(5)
    lines = daemon.stderr_lines
    assert sum(map(len, lines)) < 200_000, "stderr flooded"
    for line in lines:
        json.loads(line)  # every line is JSON, no plain-text traceback


def test_an_authorization_header_that_is_not_utf8_is_a_json_401_not_a_500(tmp_path, serving):  # noqa: F811
    service = gated_service(tmp_path, {"good": probe_blueprint("g")}, GatedSource())
    server, _ = serving(service, TOKEN)
    with structlog.testing.capture_logs() as logs:
        status, headers, body = raw_request(
            server.port, b"POST /strategies/good@bt/pause HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                         b"Authorization: Bearer \xff\xfe\xc3(\r\n\r\n")
    assert status == 401 and headers["Content-Type"].startswith("application/json")
    assert "bearer token" in json.loads(body)["error"]
    assert [entry for entry in logs if entry["log_level"] == "error"] == []
    assert service.runs[0].tick_manager.account.paused is None


def test_a_token_with_surrounding_whitespace_is_stripped(tmp_path, monkeypatch, serving):  # noqa: F811
    monkeypatch.setenv(TOKEN_ENV, f"  {TOKEN}\n")  # read from a secret file with its newline
    service = gated_service(tmp_path, {"good": probe_blueprint("g")}, GatedSource(), control_token_env=TOKEN_ENV)
    _, client = serving(service, StatusServer.for_operation(service, "127.0.0.1", 0)._token)
    assert client.json("/strategies/good@bt/pause", "POST", TOKEN)[0] == 200
    monkeypatch.setenv(TOKEN_ENV, " \n")  # only whitespace: no token, control disabled
    assert StatusServer.for_operation(service, "127.0.0.1", 0)._token is None


@pytest.mark.parametrize("request_bytes", [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Name <script>: 1\r\n\r\n",
    b"GET /<script>\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"<script>" * 2000 + b"\r\n\r\n",
    b"\x16\x03\x01\x02\x00<script> not http\r\n\r\n",
])
def test_a_request_aiohttp_cannot_parse_gets_a_json_400_without_echo_or_versions(tmp_path, serving,  # noqa: F811
                                                                                  request_bytes):
    service = gated_service(tmp_path, {"good": probe_blueprint("g")}, GatedSource())
    server, _ = serving(service)
    status, headers, body = raw_request(server.port, request_bytes)
    assert status == 400 and headers["Content-Type"].startswith("application/json"), body
    assert b"script" not in body and "error" in json.loads(body)
    assert headers["Server"] == "opdaemon"
    _, headers, _ = raw_request(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert headers["Server"] == "opdaemon"


def test_a_library_error_with_a_traceback_is_one_json_line():
    """What asyncio reports at the fd limit (or aiohttp on a broken connection) goes through the
    daemon's log, never as a plain-text traceback on stderr."""
    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)
    try:
        raise OSError(errno.EMFILE, "Too many open files")
    except OSError:
        logging.getLogger("asyncio").error("socket.accept() out of system resource", exc_info=True)
    logging.getLogger("aiohttp.access").info("not worth a line")  # below WARNING: dropped
    (line,) = stream.getvalue().splitlines()
    event = json.loads(line)
    assert (event["event"], event["level"], event["logger"]) == ("library_log", "error", "asyncio")
    assert event["message"] == "socket.accept() out of system resource"
    assert event["error"] == "OSError: [Errno 24] Too many open files"
