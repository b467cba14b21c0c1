"""The consoles' Chinese: every string a page shows has a translation, and no string has two."""

import re
from pathlib import Path

from babel.messages.pofile import read_po

from broker import console as broker_console
from connector import console
from tessera import words
from tessera.web.i18n import Languages

REPO = Path(__file__).resolve().parents[2]
CATALOGS = sorted(REPO.glob("*/**/locale/zh_CN/*.po"))
TEMPLATES = sorted(REPO.glob("*/**/templates/*.html"))
LITERAL = re.compile(r"""_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\s*[,)]""")
# Messages the pages' own code shows as they are (no value filled in): refusals, form problems, notes.
PAGE_CODE = [*REPO.glob("connector/console/*.py"), *REPO.glob("broker/console/*.py"), REPO / "tessera/web/console.py"]
MESSAGE = re.compile(r"""(?:Refused|FormProblem|problems\.append|problems=\[|flash\(request,)\(?\s*"([^"{]+)"[,)\]]""")


def _translations() -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for catalog in CATALOGS:
        with catalog.open("rb") as file:
            for message in read_po(file):
                if message.id and message.string:
                    found.setdefault(str(message.id), []).append((catalog.name, str(message.string)))
    return found


def test_no_string_is_translated_two_ways() -> None:
    # The catalogs are merged: a second translation of one message id would silently win on every page.
    assert CATALOGS
    twice = {msgid: where for msgid, where in _translations().items() if len({text for _, text in where}) > 1}
    assert twice == {}


def test_every_string_of_the_pages_templates_and_words_has_a_translation() -> None:
    translated = set(_translations())
    shown = {a or b for template in TEMPLATES for a, b in LITERAL.findall(template.read_text())}
    shown |= {label for _, label in (*console.NAV, *broker_console.NAV)}
    shown |= {*words._ACTIONS.values(), *words._CONSTRAINTS.values(), *words._DUTIES.values()}
    shown |= {*words._DUTY_DETAILS.values(), *words._LOGICAL.values()}
    shown |= {message for code in PAGE_CODE for message in MESSAGE.findall(code.read_text())}
    assert len(shown) > 100
    assert sorted(shown - translated) == []


def test_a_translation_keeps_the_fields_it_fills_in() -> None:
    for msgid, where in _translations().items():
        for catalog, text in where:
            assert set(re.findall(r"{\w*}", text)) == set(re.findall(r"{\w*}", msgid)), (catalog, msgid)


def test_an_untranslated_string_shows_in_english() -> None:
    languages = Languages([REPO / "tessera" / "web" / "locale"])
    assert languages.translator("zh-CN").gettext("Sign in") == "登录"
    assert languages.translator("zh-CN").gettext("no such message") == "no such message"
    assert languages.translator("xx").gettext("Sign in") == "Sign in"
