"""`pip install .` must give a working bot: templates and migrations ship inside the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_every_template_and_migration(tmp_path: Path) -> None:
    # Built from a clean copy: a stale build/ folder in the checkout must not hide a file
    # that a fresh clone would lack.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "data", "__pycache__"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(tmp_path / "wheels"),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    (wheel,) = (tmp_path / "wheels").glob("safecampus-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        path.relative_to(ROOT).as_posix()
        for pattern in ("templates/**/*.j2", "bot/store/migrations/**/*.py")
        for path in ROOT.glob(pattern)
    }
    expected.add("bot/store/migrations/script.py.mako")
    assert len(expected) > 100
    assert expected <= names, sorted(expected - names)
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "safecampus = bot.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
