"""Settings: flags > FARM_* variables > the TOML config file > defaults; secrets masked wherever shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from cli.main import app
from farm import defaults
from farm.settings import config_path, load_settings, mask_url
from tests.helpers import isolate_farm_env

PASSWORD = "s3cretPa55"  # noqa: S105  (a made-up password, which no output may show)


@pytest.fixture(autouse=True)
def config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No FARM_* variable from the caller's shell (not even a broker: the defaults are under test), no user
    config file; returns the config file's path (absent until a test writes it)."""
    path = tmp_path / "config.toml"
    isolate_farm_env(monkeypatch, path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return path


def write_config(path: Path, **values: object) -> Path:
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- precedence --------------------------------------------------------------------------------------------------


def test_default_when_nothing_is_configured(config_file: Path) -> None:
    assert not config_file.exists()
    s = load_settings()
    assert s.broker_url == defaults.REDIS_URL
    assert s.key_prefix == defaults.KEY_PREFIX
    assert s.max_attempts == defaults.MAX_ATTEMPTS
    assert s.model_fields_set == set()


def test_config_file_beats_default(config_file: Path) -> None:
    write_config(config_file, broker_url="redis://from-file:6379/1", key_prefix="lab")
    s = load_settings()
    assert s.broker_url == "redis://from-file:6379/1"
    assert s.key_prefix == "lab"


def test_environment_beats_config_file(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(config_file, broker_url="redis://from-file:6379/1", key_prefix="lab")
    monkeypatch.setenv("FARM_BROKER_URL", "redis://from-env:6379/2")
    s = load_settings()
    assert s.broker_url == "redis://from-env:6379/2"
    assert s.key_prefix == "lab"  # fields merge one by one: the file still supplies what the env lacks


def test_explicit_beats_environment(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(config_file, broker_url="redis://from-file:6379/1")
    monkeypatch.setenv("FARM_BROKER_URL", "redis://from-env:6379/2")
    assert load_settings(broker_url="redis://from-flag:6379/3").broker_url == "redis://from-flag:6379/3"
    # None means "flag not given": the environment wins again.
    assert load_settings(broker_url=None).broker_url == "redis://from-env:6379/2"


def test_explicit_beats_config_file_and_default(config_file: Path) -> None:
    assert load_settings(broker_url="redis://flag:1/0").broker_url == "redis://flag:1/0"
    write_config(config_file, broker_url="redis://from-file:6379/1")
    assert load_settings(broker_url="redis://flag:1/0").broker_url == "redis://flag:1/0"


def test_environment_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_BROKER_URL", "rediss://env:6380/0")
    monkeypatch.setenv("FARM_MAX_ATTEMPTS", "5")
    s = load_settings()
    assert s.broker_url == "rediss://env:6380/0"
    assert s.max_attempts == 5


def test_config_path_follows_xdg_without_farm_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FARM_CONFIG")
    expected = tmp_path / "xdg" / "benchfarm" / "config.toml"
    assert config_path() == expected
    expected.parent.mkdir(parents=True)
    write_config(expected, broker_url="redis://xdg:6379/0")
    assert load_settings().broker_url == "redis://xdg:6379/0"


def test_config_file_values_are_validated(config_file: Path) -> None:
    write_config(config_file, max_attempts=0)
    with pytest.raises(ValidationError):
        load_settings()


# -- validation --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://h:6380/0", "unix:///tmp/redis.sock?db=0"])
def test_valid_schemes(url: str) -> None:
    assert load_settings(broker_url=url).broker_url == url


@pytest.mark.parametrize("url", ["http://h:6379/0", "amqp://guest@h//", "h:6379"])
def test_invalid_scheme_refused(url: str) -> None:
    with pytest.raises(ValidationError) as info:
        load_settings(broker_url=url)
    assert "redis://" in str(info.value)


def test_invalid_scheme_from_environment_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_BROKER_URL", "http://h:6379/0")
    with pytest.raises(ValidationError):
        load_settings()


def test_invalid_scheme_on_the_command_line_exits_2() -> None:
    result = CliRunner().invoke(app, ["config", "--broker", "http://h:6379/0"])
    assert result.exit_code == 2, result.output
    assert "broker_url" in result.output
    assert "Traceback" not in result.output


# -- masking -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, masked",
    [
        (f"redis://:{PASSWORD}@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (f"redis://alice:{PASSWORD}@redis.lab:6379/0", "redis://alice:***@redis.lab:6379/0"),
        (f"rediss://:{PASSWORD}@redis.lab:6380/1", "rediss://:***@redis.lab:6380/1"),
        (
            f"rediss://default:{PASSWORD}@redis.lab:6380/1?ssl_cert_reqs=required",
            "rediss://default:***@redis.lab:6380/1?ssl_cert_reqs=required",
        ),
        (f"unix:///run/redis.sock?password={PASSWORD}", "unix:///run/redis.sock?password=***"),
        (f"unix:///run/redis.sock?db=2&password={PASSWORD}", "unix:///run/redis.sock?db=2&password=***"),
        (f"unix://:{PASSWORD}@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        (f"redis://:{PASSWORD}@h:6379/0?password={PASSWORD}", "redis://:***@h:6379/0?password=***"),
    ],
)
def test_mask_url_masks_passwords(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert PASSWORD not in mask_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://redis.lab:6380/1",
        "unix:///run/redis.sock?db=0",
        "unix:///run/redis.sock",
        "redis://h:6379/0?socket_timeout=5",
    ],
)
def test_mask_url_leaves_passwordless_urls_unchanged(url: str) -> None:
    assert mask_url(url) == url


def test_shown_masks_the_broker_url() -> None:
    s = load_settings(broker_url=f"redis://:{PASSWORD}@h:6379/0")
    assert s.broker_url.endswith("@h:6379/0") and PASSWORD in s.broker_url  # the real value is kept
    shown = s.shown()
    assert shown["broker_url"] == "redis://:***@h:6379/0"
    assert PASSWORD not in json.dumps(shown)


def test_config_json_shows_masked_url_from_flag() -> None:
    result = CliRunner().invoke(app, ["config", "--json", "--broker", f"redis://:{PASSWORD}@h:6379/0"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["settings"]["broker_url"] == "redis://:***@h:6379/0"
    assert PASSWORD not in result.output


def test_config_json_shows_masked_url_from_env_and_file(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(config_file, broker_url=f"rediss://alice:{PASSWORD}@file:6380/0", key_prefix="lab")
    result = CliRunner().invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["config_file"] == str(config_file) and data["config_file_exists"] is True
    assert data["settings"]["broker_url"] == "rediss://alice:***@file:6380/0"
    assert data["settings"]["key_prefix"] == "lab"
    assert PASSWORD not in result.output

    monkeypatch.setenv("FARM_BROKER_URL", f"unix:///run/r.sock?db=0&password={PASSWORD}")
    result = CliRunner().invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["broker_url"] == "unix:///run/r.sock?db=0&password=***"
    assert PASSWORD not in result.output


def test_config_table_never_shows_the_password() -> None:
    result = CliRunner().invoke(app, ["config", "--broker", f"redis://bob:{PASSWORD}@h:6379/0"])
    assert result.exit_code == 0, result.output
    assert "bob:***@h" in result.output
    assert PASSWORD not in result.output


def test_config_reports_absent_file(config_file: Path) -> None:
    result = CliRunner().invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["config_file_exists"] is False
    assert data["settings"]["broker_url"] == defaults.REDIS_URL


# -- bugs --------------------------------------------------------------------------------------------------------


def test_invalid_url_error_does_not_echo_the_password() -> None:
    result = CliRunner().invoke(app, ["config", "--broker", f":{PASSWORD}@127.0.0.1:6379/0"])
    assert result.exit_code == 2, result.output
    assert PASSWORD not in result.output


def test_malformed_config_file_is_a_clean_error(config_file: Path) -> None:
    config_file.write_text('broker_url = "redis://unterminated\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["config", "--json"])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2
    assert str(config_file) in result.output


@pytest.mark.parametrize("url", ["redis+socket:///tmp/benchfarm-test-no.sock", "redis://127.0.0.1:99999/0"])
def test_urls_settings_accept_are_usable_or_refused_cleanly(url: str) -> None:
    result = CliRunner().invoke(app, ["workers", "--json", "--broker", url])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (1, 2)
