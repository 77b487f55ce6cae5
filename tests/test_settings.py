"""Settings: documented defaults, relative paths, environment overrides, one-sentence errors."""
from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT

from responder.core.errors import ConfigError
from responder.core.settings import load_settings


def test_shipped_settings_file_loads_with_defaults():
    settings = load_settings(ROOT / "settings.toml")
    assert settings.llm.provider == "offline"
    assert settings.knowledge_dir == ROOT / "knowledge"
    assert settings.database_url == f"sqlite:///{ROOT / 'data' / 'deskhand.sqlite3'}"
    assert not settings.email.imap_enabled and settings.email.smtp_tls == "starttls"


def test_relative_paths_resolve_against_the_file(tmp_path):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "shop.toml"
    path.write_text('[knowledge]\ndir = "../kb"\n[database]\ndata_dir = "state"\n')
    settings = load_settings(path)
    assert settings.knowledge_dir == tmp_path / "kb"
    assert settings.data_dir == tmp_path / "conf" / "state"


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    path = tmp_path / "s.toml"
    path.write_text('[email]\nimap_host = "imap.file.test"\nsmtp_tls = false\n')
    monkeypatch.setenv("DESKHAND_EMAIL__IMAP_HOST", "imap.env.test")
    settings = load_settings(path)
    assert settings.email.imap_host == "imap.env.test" and settings.email.smtp_tls is False


@pytest.mark.parametrize("body, words", [
    ('[email]\nimap_port = "lots"\n', ["[email] imap_port", "lots"]),
    ('[email]\nsmtp_tls = "maybe"\n', ["[email] smtp_tls"]),
    ('[store]\ntimezone = "Mars/Olympus"\n', ["[store] timezone", "Mars/Olympus"]),
    ('[emial]\nimap_host = "x"\n', ["emial", "not a known setting"]),
    ('[email]\nimap_hots = "x"\n', ["[email] imap_hots", "not a known setting"]),
    ('[llm]\nprovider = "skynet"\n', ["[llm] provider"]),
    ("[store\nname = 1", ["not valid TOML"]),
])
def test_bad_settings_name_the_key(tmp_path, body, words):
    path = tmp_path / "s.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    message = str(err.value)
    assert all(w in message for w in words), message
    assert message.count("\n") == 0


def test_missing_file_and_secrets(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    path = tmp_path / "s.toml"
    path.write_text('[email]\npassword_env = "SHOP_PW"\n')
    settings = load_settings(path)
    monkeypatch.delenv("SHOP_PW", raising=False)
    with pytest.raises(ConfigError, match="SHOP_PW named by \\[email\\] password_env is not set"):
        settings.email.password()
    monkeypatch.setenv("SHOP_PW", "changeme")
    with pytest.raises(ConfigError, match="placeholder"):
        settings.email.password()
    monkeypatch.setenv("SHOP_PW", "s3cret-app-pw")
    assert settings.email.password() == "s3cret-app-pw"


def test_run_py_refuses_a_bad_setting_in_one_sentence(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[web]\nport = 99999\n")
    result = subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(path), "check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("Deskhand cannot start: s.toml: [web] port")
    assert len(result.stderr.strip().splitlines()) == 1
