"""The `safecampus` command: a mistyped setting is one clear line and exit status 2."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tests.support import SUPERADMIN_ID

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
        ("semester_starts", "09-01,13-01"),
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


GOOD_PLAN = """\
- name: 消防检查
  text: "请于 {date} {time} 前完成消防检查"
  schedule: weekly
  days: [mon, fri]
  at: "09:00"
  leads: [1d, 0]
  purpose: class
  unit: 信息学院
  ack: true
  follow_up: 2h
"""
BAD_PLAN = """\
- name: 好规则
  text: 这一条没问题
  schedule: daily
  at: "08:00"
  purpose: class
  unit: 信息学院
- name: 坏规则
  text: "{__class__}"
  schedule: daily
  at: "25:00"
  purpose: class
  unit: 信息学院
  colour: red
"""


def school_database(tmp_path: Path) -> str:
    """A migrated database with two class groups under 信息学院; its URL."""
    import asyncio

    from bot.services import org
    from tests.support import FakeClock, add_groups, make_settings, open_runtime, profile

    settings = make_settings(tmp_path)

    async def build() -> None:
        rt = await open_runtime(settings, FakeClock(datetime.now(UTC)))
        try:
            boss = await org.identify(rt, profile(SUPERADMIN_ID, "boss", "boss"), private=True)
            groups = [
                ("-801", "信息学院/计科2201", "class"),
                ("-802", "信息学院/计科2202", "class"),
            ]
            await add_groups(rt, boss, groups)
        finally:
            await rt.db.close()

    asyncio.run(build())
    return settings.database_url


def stored_rules(tmp_path: Path) -> list[str]:
    with closing(sqlite3.connect(tmp_path / "safecampus.db")) as db:
        return [row[0] for row in db.execute("SELECT name FROM reminder_rules ORDER BY id")]


def test_plan_import_of_a_bad_file_lists_every_problem_by_line_and_stores_nothing(
    tmp_path: Path,
) -> None:
    url = school_database(tmp_path)
    plan = tmp_path / "plan.yaml"
    plan.write_text(BAD_PLAN, encoding="utf-8")
    result = safecampus(tmp_path, "plan", "import", str(plan), database_url=url)
    assert result.returncode == 1, result.stderr
    assert "nothing stored" in result.stderr
    assert "line 8: variable not allowed ({__class__})" in result.stderr
    assert "line 10: time must be HH:MM (25:00)" in result.stderr
    assert "line 13: unknown key (colour)" in result.stderr
    assert "Traceback" not in result.stderr
    assert stored_rules(tmp_path) == []  # not even the good first rule

    missing = safecampus(tmp_path, "plan", "import", str(tmp_path / "nope.yaml"), database_url=url)
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr


def test_plan_import_then_export_prints_yaml_that_imports_again(tmp_path: Path) -> None:
    url = school_database(tmp_path)
    plan = tmp_path / "plan.yaml"
    plan.write_text(GOOD_PLAN, encoding="utf-8")
    imported = safecampus(tmp_path, "plan", "import", str(plan), database_url=url)
    assert imported.returncode == 0, imported.stderr
    assert "imported 1 new rule(s), replaced 0" in imported.stdout
    assert stored_rules(tmp_path) == ["消防检查"]

    exported = safecampus(tmp_path, "plan", "export", database_url=url)
    assert exported.returncode == 0, exported.stderr
    rules = yaml.safe_load(exported.stdout)
    assert rules == [
        {
            "name": "消防检查",
            "text": "请于 {date} {time} 前完成消防检查",
            "schedule": "weekly",
            "at": "09:00",
            "days": ["mon", "fri"],
            "leads": ["1d", "0"],
            "purpose": "class",
            "unit": "信息学院",
            "ack": True,
            "follow_up": "2h",
            "paused": False,
        }
    ]

    again = tmp_path / "exported.yaml"
    again.write_text(exported.stdout, encoding="utf-8")
    reimported = safecampus(tmp_path, "plan", "import", str(again), database_url=url)
    assert reimported.returncode == 0, reimported.stderr
    assert "imported 0 new rule(s), replaced 1" in reimported.stdout
    assert stored_rules(tmp_path) == ["消防检查"]
    assert safecampus(tmp_path, "plan", "export", database_url=url).stdout == exported.stdout


def test_the_preset_loads_from_the_command_line_and_twice_is_once(tmp_path: Path) -> None:
    url = school_database(tmp_path)
    first = safecampus(tmp_path, "plan", "preset", "pingan-campus", database_url=url)
    assert first.returncode == 0, first.stderr
    assert "9 assessment items added" in first.stdout
    assert "9 reminder rules added" in first.stdout
    rules = stored_rules(tmp_path)
    again = safecampus(tmp_path, "plan", "preset", "pingan-campus", database_url=url)
    assert "0 assessment items added, 9 already there; 0 reminder rules added" in again.stdout
    assert stored_rules(tmp_path) == rules
    unknown = safecampus(tmp_path, "plan", "preset", "nope", database_url=url)
    assert unknown.returncode == 1
    assert "pingan-campus" in unknown.stderr
    assert "Traceback" not in unknown.stderr
