"""The `safecampus` command: a mistyped setting is one clear line and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def safecampus(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in ``tmp_path`` (so no developer's .env is read) with only ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFECAMPUS_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update({f"SAFECAMPUS_{name.upper()}": value for name, value in settings.items()})
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_without_a_token_names_the_setting_and_exits_2(tmp_path: Path) -> None:
    result = safecampus(tmp_path, "run")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "SAFECAMPUS_BOT_TOKEN" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("timezone", "Mars/Olympus"),
        ("locale", "fr"),
        ("superadmins", "12,abc"),
        ("log_level", "LOUD"),
        ("database_url", "not a url"),
        ("database_url", "sqlite:///data/x.db"),
        ("api_base_url", "api.telegram.org/bot"),
        ("ack_deadlines", "urgent=5m"),
        ("ack_deadlines", "urgent=soon,major=30m,serious=4h,routine=24h"),
        ("escalation_interval", "0m"),
        ("reports_per_minute", "0"),
        ("data_dir", "/proc/forbidden"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(tmp_path: Path, setting: str, value: str) -> None:
    result = safecampus(tmp_path, "run", bot_token="1:x", **{setting: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"SAFECAMPUS_{setting.upper()}" in lines[0]
    assert "Traceback" not in result.stderr


def test_settings_come_from_a_dotenv_file_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SAFECAMPUS_TIMEZONE=Nowhere/Town\n", encoding="utf-8")
    result = safecampus(tmp_path, "db", "upgrade")
    assert result.returncode == 2
    assert "SAFECAMPUS_TIMEZONE" in result.stderr


def test_db_upgrade_creates_the_data_directory_and_is_repeatable(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/deep/er/safecampus.db"
    first = safecampus(tmp_path, "db", "upgrade", database_url=url)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "deep" / "er" / "safecampus.db").exists()
    second = safecampus(tmp_path, "db", "upgrade", database_url=url)
    assert second.returncode == 0, second.stderr


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = safecampus(tmp_path, "--help")
    assert result.returncode == 0
    assert "run" in result.stdout
    assert "db" in result.stdout
