"""The official DSP 2025-1 validator from `../shared/dsp` (beside the checkout, in CI too)."""

import importlib.util
from pathlib import Path
from typing import Any

VALIDATOR = Path(__file__).resolve().parents[2] / "shared" / "dsp" / "validate.py"
_spec = importlib.util.spec_from_file_location("dsp_validate", VALIDATOR)
assert _spec and _spec.loader, f"the DSP validator is missing at {VALIDATOR}"
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)


def validate_message(message: dict[str, Any]) -> list[str]:
    """Schema errors of one message (chosen by its @type); [] when valid."""
    return [str(error) for error in _module.validate_message(message)]
