"""Languages of the consoles: English source strings, translated from gettext `.po` catalogs.

Every `*.po` file under a locale folder (`<folder>/<language>/*.po`) is read at start with Babel and merged,
so each page module keeps its own catalog and translators work in the standard format; no compile step.
A string without a translation shows in English.

```python
languages = Languages([Path("tessera/web/locale"), Path("connector/console/locale")])
translator = languages.translator("zh-CN")
translator.gettext("Sign in")          # "登录"
```
"""

import io
from dataclasses import dataclass, field
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LANGUAGES = {"en": "English", "zh-CN": "简体中文"}
DEFAULT = "en"
COOKIE = "tessera_lang"


@dataclass
class Languages:
    """The translations of every language in `LANGUAGES`, read from the locale folders."""

    folders: list[Path]
    _translations: dict[str, NullTranslations] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for language in LANGUAGES:
            self._translations[language] = self._read(language)

    def _read(self, language: str) -> NullTranslations:
        locale = language.replace("-", "_")
        merged = Catalog(locale=locale)
        for folder in self.folders:
            for po in sorted((folder / locale).glob("*.po")):
                with po.open("rb") as file:
                    for message in read_po(file, locale=locale):
                        if message.id and message.string:
                            merged[message.id] = message
        if not len(merged):
            return NullTranslations()
        compiled = io.BytesIO()
        write_mo(compiled, merged)
        compiled.seek(0)
        return Translations(compiled)

    def translator(self, language: str) -> NullTranslations:
        return self._translations.get(language, self._translations[DEFAULT])


def choose(cookie: str | None, accept_language: str) -> str:
    """The language a request asks for: the console's cookie, else the browser's first known language."""
    if cookie in LANGUAGES:
        return cookie
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT
