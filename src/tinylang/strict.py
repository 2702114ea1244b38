"""The base of every config model: unknown keys are refused with the allowed ones and a close match."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class StrictModel(BaseModel):
    """A pydantic model that refuses unknown keys, naming the allowed ones (``extra="forbid"``
    alone says only "Extra inputs are not permitted")."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        allowed = sorted({name for name in cls.model_fields} | {f.alias for f in cls.model_fields.values() if f.alias})
        unknown = [key for key in data if key not in allowed]
        if unknown:
            hints = []
            for key in unknown:
                match = difflib.get_close_matches(str(key), allowed, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {match[0]!r}?)" if match else ""))
            raise ValueError(f"unknown key(s) {', '.join(hints)}; allowed: {', '.join(allowed)}")
        return data
