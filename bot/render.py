"""Every user-visible text comes from a Jinja2 template in templates/<locale>/.

Templates produce Telegram-flavoured HTML (<b>, <i>, <code>, <a>); values are auto-escaped, so a
user's name or text can never break the markup.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

import templates as templates_package

LOCALES = ("zh_CN", "en")
TEMPLATES_DIR = Path(templates_package.__file__).parent


def choose_locale(own: str | None, telegram_language: str | None, default: str) -> str:
    """The person's own setting, else their Telegram app language, else the configured default."""
    if own in LOCALES:
        return own
    if telegram_language:
        language = telegram_language.lower()
        if language.startswith("zh"):
            return "zh_CN"
        if language.startswith("en"):
            return "en"
    return default


class Renderer:
    """Renders ``<capability>/<message>.j2`` for a locale, showing times in the configured zone."""

    def __init__(self, zone: ZoneInfo, default_locale: str) -> None:
        self.zone = zone
        self.default_locale = default_locale
        self._environments = {locale: self._environment(locale) for locale in LOCALES}

    def _environment(self, locale: str) -> jinja2.Environment:
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES_DIR / locale),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
        )
        environment.filters["local"] = self._local_time
        return environment

    def _local_time(self, value: datetime, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return value.astimezone(self.zone).strftime(fmt)

    def render(self, locale: str, name: str, **context: Any) -> str:
        """Render template ``name`` (e.g. ``"org/bound.j2"``) in ``locale``, trimmed."""
        environment = self._environments.get(locale, self._environments[self.default_locale])
        return environment.get_template(name).render(**context).strip()

    def template_names(self, locale: str) -> list[str]:
        """All templates of a locale (the completeness test compares the locales)."""
        return sorted(self._environments[locale].list_templates(extensions=["j2"]))
