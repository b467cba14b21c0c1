"""Load Rego modules and JSON data from files and directories, the way `opa eval -d` does.

A `.rego` file is a module (its id is the path as given). A `.json` file is data: given directly it
is merged at the root of `data`; found under a directory `d`, the file `d/a/b/x.json` is merged at
`data.a.b`. Hidden files and directories are skipped.
"""

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tessera.errors import BadRequest
from tessera.json import JSONObject
from tessera.policy.base import PolicyModule

__all__ = ["LoadError", "Loaded", "load_paths"]


class LoadError(BadRequest):
    """A path could not be read, or its data is not JSON or conflicts with other data."""


@dataclass
class Loaded:
    modules: list[PolicyModule] = field(default_factory=list)
    data: JSONObject = field(default_factory=dict)


def load_paths(paths: Iterable[str]) -> Loaded:
    loaded = Loaded()
    for path in paths:
        if os.path.isdir(path):
            for file in _walk(path):
                prefix = Path(os.path.relpath(os.path.dirname(file), path)).parts
                _load_file(loaded, file, [p for p in prefix if p != "."])
        elif os.path.isfile(path):
            _load_file(loaded, path, [])
        else:
            raise LoadError(f"{path}: no such file or directory")
    return loaded


def _walk(root: str) -> list[str]:
    files = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        files += [os.path.join(directory, n) for n in sorted(names) if not n.startswith(".")]
    return [f for f in files if f.endswith((".rego", ".json"))]


def _load_file(loaded: Loaded, path: str, prefix: list[str]) -> None:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(f"{path}: {exc}") from exc
    if path.endswith(".rego"):
        loaded.modules.append(PolicyModule(id=path, source=text))
        return
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise LoadError(f"{path}: not JSON: {exc}") from exc
    for key in reversed(prefix):
        value = {key: value}
    if not isinstance(value, dict):
        raise LoadError(f"{path}: data at the root must be a JSON object")
    _merge(loaded.data, value, path)


def _merge(into: JSONObject, value: JSONObject, path: str) -> None:
    for key, item in value.items():
        if isinstance(into.get(key), dict) and isinstance(item, dict):
            _merge(into[key], item, path)
        elif key in into:
            raise LoadError(f"{path}: data conflicts at key {key!r}")
        else:
            into[key] = item
