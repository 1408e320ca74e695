"""Every user-visible text exists in zh_CN and en, and every template renders."""

from __future__ import annotations

from types import SimpleNamespace
from zoneinfo import ZoneInfo

from bot.render import LOCALES, Renderer, choose_locale

GUEST = SimpleNamespace(person=SimpleNamespace(full_name="Test"))


def test_both_locales_have_the_same_templates() -> None:
    renderer = Renderer(ZoneInfo("Asia/Shanghai"), "zh_CN")
    names = {locale: set(renderer.template_names(locale)) for locale in LOCALES}
    assert names["zh_CN"], "no templates found"
    assert names["zh_CN"] == names["en"], names["zh_CN"] ^ names["en"]


def test_chinese_templates_are_chinese_and_english_ones_are_not() -> None:
    renderer = Renderer(ZoneInfo("Asia/Shanghai"), "zh_CN")
    for name in ("start/not_enrolled.j2", "fallback/hint.j2", "errors/stale_button.j2"):
        assert any("\u4e00" <= ch <= "\u9fff" for ch in renderer.render("zh_CN", name, actor=GUEST))
        assert not any(
            "\u4e00" <= ch <= "\u9fff" for ch in renderer.render("en", name, actor=GUEST)
        )


def test_user_text_is_escaped() -> None:
    renderer = Renderer(ZoneInfo("Asia/Shanghai"), "zh_CN")
    shown = renderer.render("en", "errors/unknown_person.j2", reference="<b>&x")
    assert "&lt;b&gt;&amp;x" in shown


def test_language_choice_order() -> None:
    assert choose_locale("en", "zh-hans", "zh_CN") == "en"
    assert choose_locale(None, "zh-hant", "en") == "zh_CN"
    assert choose_locale(None, "en-GB", "zh_CN") == "en"
    assert choose_locale(None, "ru", "en") == "en"
    assert choose_locale(None, None, "zh_CN") == "zh_CN"


def test_a_pop_up_shows_text_not_markup() -> None:
    from handlers.common import plain

    assert plain("已确认收到「<b>A&amp;B</b>」 &lt;3") == "已确认收到「A&B」 <3"
