"""No credential in any output: a URL's `user:password@` part is masked in every log field and
message, and a key or secret pasted where the name of its environment variable belongs is refused
without being shown (validate, --print-config and a run alike)."""

import signal
import time

import pytest

from services.cli import main
from tests.daemon import Daemon
from tests.fake_kraken import FakeKraken
from tests.helpers import write_config_tree
from tests.test_lifecycle_daemon import paper_settings
from tests.test_restart import CREDENTIALS, Minutes, dca_blueprint, wait_for
from tests.test_validate import live_tree

URL_PASSWORD = "pa55word-in-the-url"
PASTED_KEY = "Kq3xZ+7vYp/2mW9nL0aBcD4eFgH5iJkLmN6oPqR8sTuV1wXyZ2aB3cD=="  # base64, as Kraken's keys
ALPHANUMERIC_KEY = "Kq3xZ7vYp2mW9nL0aBcD4eFgH5iJkLmN6oPqR8sTuV1wXyZ2aB3cD4eF"  # 56 characters, a valid name


@pytest.mark.e2e
@pytest.mark.slow
def test_a_password_in_api_url_is_masked_in_every_log_line(tmp_path, fake: FakeKraken):
    with_password = fake.url.replace("http://", f"http://someone:{URL_PASSWORD}@")
    operation = write_config_tree(tmp_path, [("dca", "live")], {"dca": dca_blueprint()},
                                  {"live": {**paper_settings(fake), "api_url": with_password}})
    Minutes(fake, 4)
    daemon = Daemon([str(operation), "--data-dir", str(tmp_path / "state")], env=CREDENTIALS)
    try:
        (ready,) = wait_for(daemon, "exchange_ready")
        assert ready["url"] == fake.url.replace("http://", "http://***@")
        fake.fail_next(3, 503)
        (unavailable,) = wait_for(daemon, "market_data_unavailable")
        assert "***@" in unavailable["error"]
        daemon.signal(signal.SIGTERM)
        daemon.finish()
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(5)
    assert URL_PASSWORD not in daemon.stderr


@pytest.mark.parametrize("key", ["api_key_env", "api_secret_env"])
@pytest.mark.parametrize("pasted", [PASTED_KEY, ALPHANUMERIC_KEY])
@pytest.mark.parametrize("command", [["validate", "{path}"], ["{path}", "--print-config"], ["{path}"]])
def test_a_key_pasted_in_place_of_its_variable_name_is_refused_unshown(tmp_path, capsys, key, pasted, command):
    path = live_tree(tmp_path, **{key: pasted})
    started = time.monotonic()
    assert main([part.format(path=path) for part in command] + ["--data-dir", str(tmp_path / "state")]) == 2
    out, err = capsys.readouterr()
    assert f"{key}: must be the name of an environment variable" in err
    assert pasted not in out + err and pasted[:12] not in out + err
    assert time.monotonic() - started < 10 and not (tmp_path / "state").exists()
