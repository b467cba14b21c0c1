"""The official DSP 2025-1 validator (`../shared/dsp/validate.py`), loaded from a schema directory.

The validator is the project's reference, so the self-test imports it instead of re-implementing it.
`directory` may be the folder holding `validate.py` (and `2025-1/`) or the `2025-1` schema folder itself.
"""

import importlib.util
from pathlib import Path
from typing import Any, Protocol

DEFAULT_DIRECTORY = Path(__file__).resolve().parents[2].parent / "shared" / "dsp"
ERROR_TYPES = {"negotiation": "ContractNegotiationError", "transfer": "TransferError", "catalog": "CatalogError"}


class Validator(Protocol):
    """What the harness uses of `validate.py`."""

    ROOT: Path  # the schema folder

    def validate_message(self, message: dict[str, Any]) -> list[str]: ...


class SchemaSetupError(Exception):
    """The validator or its schemas cannot be found or loaded (needs `jsonschema>=4.18`)."""


class Schemas:
    """Validates messages against the DSP schemas in one directory."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory, self._module = _load(directory or DEFAULT_DIRECTORY)

    def errors(self, message: Any, *, expected: str | None = None) -> list[str]:
        """Schema violations of `message` ([] when valid); `expected` also pins its @type."""
        if not isinstance(message, dict):
            return [f"<root>: not a JSON object: {str(message)[:80]!r}"]
        kind = message.get("@type")
        if expected is not None and kind != expected:
            return [f"@type: expected {expected}, got {kind!r}"]
        try:
            return [str(error) for error in self._module.validate_message(message)]
        except KeyError as exc:
            return [f"@type: {exc.args[0]}"]


def _load(directory: Path) -> tuple[Path, Validator]:
    directory = directory.resolve()
    if (directory / "validate.py").is_file():
        script, schemas = directory / "validate.py", directory / "2025-1"
    elif (directory.parent / "validate.py").is_file():
        script, schemas = directory.parent / "validate.py", directory
    else:
        raise SchemaSetupError(f"no validate.py in {directory} or its parent")
    if not schemas.is_dir():
        raise SchemaSetupError(f"no DSP schemas in {schemas}")
    spec = importlib.util.spec_from_file_location(f"dsp_validate_{abs(hash(schemas))}", script)
    if spec is None or spec.loader is None:
        raise SchemaSetupError(f"cannot load {script}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise SchemaSetupError(f"{script} needs jsonschema>=4.18: {exc}") from exc
    validator: Validator = module
    validator.ROOT = schemas  # the validator reads ROOT when it first builds its registry
    return schemas, validator
