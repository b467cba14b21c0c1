"""Identifiers we mint: process ids, agreement ids, token ids."""

import uuid


def new_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"
