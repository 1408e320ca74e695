"""Settings from the environment and `.env`, all prefixed ``SAFECAMPUS_`` (the public contract)."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ENV_PREFIX = "SAFECAMPUS_"
Locale = Literal["zh_CN", "en"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Settings(BaseSettings):
    """Everything an operator may configure. Field names map to ``SAFECAMPUS_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    bot_token: SecretStr | None = None
    database_url: str = "sqlite+aiosqlite:///data/safecampus.db"
    api_base_url: str = "https://api.telegram.org/bot"
    api_file_base_url: str = "https://api.telegram.org/file/bot"
    timezone: str = "Asia/Shanghai"
    locale: Locale = "zh_CN"
    superadmins: Annotated[frozenset[int], NoDecode] = Field(default_factory=frozenset)
    data_dir: Path = Path("data")
    log_level: LogLevel = "INFO"
    # How long a report may wait for acknowledgement, per severity, before it is escalated.
    ack_deadlines: Annotated[dict[str, timedelta], NoDecode] = Field(
        default_factory=lambda: _parse_deadlines(DEFAULT_ACK_DEADLINES)
    )
    escalation_interval: Annotated[timedelta, NoDecode] = timedelta(minutes=15)
    reports_per_minute: int = Field(default=5, ge=1, le=100)

    @field_validator("ack_deadlines", mode="before")
    @classmethod
    def _deadlines(cls, value: object) -> object:
        return _parse_deadlines(value) if isinstance(value, str) else value

    @field_validator("escalation_interval", mode="before")
    @classmethod
    def _interval(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("superadmins", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            for part in parts:
                if not part.lstrip("-").isdigit():
                    raise ValueError(f"{part!r} is not a Telegram user id (digits only)")
            return frozenset(int(part) for part in parts)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (try Asia/Shanghai)") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _parsable_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {value!r}") from exc
        if url.get_backend_name() == "sqlite" and url.get_driver_name() != "aiosqlite":
            raise ValueError(
                "SQLite needs the async driver: start the URL with sqlite+aiosqlite://"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("api_base_url", "api_file_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The configured time zone, for display and scheduling."""
        return ZoneInfo(self.timezone)

    @property
    def log_level_number(self) -> int:
        return logging.getLevelNamesMapping()[self.log_level]


SEVERITIES = ("urgent", "major", "serious", "routine")
DEFAULT_ACK_DEADLINES = "urgent=5m,major=30m,serious=4h,routine=24h"
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """``"5m"``, ``"4h"``, ``"1d"`` or ``"30s"`` as a timedelta (a positive number and a unit)."""
    value = text.strip().lower()
    if len(value) < 2 or value[-1] not in _UNITS or not value[:-1].isdigit() or int(value[:-1]) < 1:
        raise ValueError(f"{text!r} is not a duration like 5m, 4h or 1d")
    return timedelta(**{_UNITS[value[-1]]: int(value[:-1])})


def _parse_deadlines(text: object) -> dict[str, timedelta]:
    deadlines = {}
    for part in str(text).split(","):
        name, _, duration = part.partition("=")
        if name.strip() not in SEVERITIES:
            raise ValueError(f"{name.strip()!r} is not one of {', '.join(SEVERITIES)}")
        deadlines[name.strip()] = parse_duration(duration)
    missing = [name for name in SEVERITIES if name not in deadlines]
    if missing:
        raise ValueError(f"no deadline for {', '.join(missing)} (e.g. {DEFAULT_ACK_DEADLINES})")
    return deadlines


class SettingsError(Exception):
    """A setting is missing or malformed; ``str()`` is one line naming the variable."""


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning pydantic's report into one line that names the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ENV_PREFIX + str(first["loc"][0]).upper() if first["loc"] else ENV_PREFIX
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{name}: {message}") from None
