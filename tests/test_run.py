"""`safecampus run`, the real entry point, against the fake Telegram server: it starts, migrates,
answers, and stops cleanly on Ctrl-C; a refused token is one clear line and exit status 2."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.fakebotapi import FakeBotAPI
from tests.support import SUPERADMIN_ID

ROOT = Path(__file__).resolve().parent.parent


async def start_cli(tmp_path: Path, telegram: FakeBotAPI, token: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFECAMPUS_")}
    env.update(
        PYTHONPATH=str(ROOT),
        SAFECAMPUS_BOT_TOKEN=token,
        SAFECAMPUS_API_BASE_URL=telegram.base_url,
        SAFECAMPUS_API_FILE_BASE_URL=telegram.file_base_url,
        SAFECAMPUS_SUPERADMINS=str(SUPERADMIN_ID),
    )
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "run",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_run_starts_answers_and_stops_cleanly(
    tmp_path: Path, fake_telegram: FakeBotAPI
) -> None:
    process = await start_cli(tmp_path, fake_telegram, FakeBotAPI.TOKEN)
    try:
        boss = fake_telegram.user(SUPERADMIN_ID, "Chief", language_code="en")
        await boss.send("/start")
        reply = await fake_telegram.next_message(boss.id, timeout=30)
        assert "superadmin" in (reply.visible_text or "")
        assert (tmp_path / "data" / "safecampus.db").exists()  # the default, created on start
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    log = stderr.decode()
    assert "Traceback" not in log
    assert FakeBotAPI.TOKEN not in log  # the token never reaches the logs
    assert all(line.startswith("time=") for line in log.splitlines()), log


async def test_a_refused_token_is_one_line_and_exit_2(
    tmp_path: Path, fake_telegram: FakeBotAPI
) -> None:
    process = await start_cli(tmp_path, fake_telegram, "999:WRONG")
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    problem = [line for line in stderr.decode().splitlines() if not line.startswith("time=")]
    assert len(problem) == 1, stderr.decode()
    assert "SAFECAMPUS_BOT_TOKEN" in problem[0]
    assert "Traceback" not in stderr.decode()
