"""The base of every config model: unknown keys are refused with the allowed ones and a close match."""

from __future__ import annotations

import difflib
import inspect
import io
import re
import tokenize
from collections.abc import Iterable
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


def field_comments(cls: type[BaseModel]) -> dict[str, str]:
    """Field name → the comment that documents it in the source of ``cls`` or of the class it
    inherits the field from: the comment at the end of its line, else the comment lines right
    above it (so a schema describes what the code says)."""
    found: dict[str, str] = {}
    for owner in reversed([c for c in cls.__mro__ if isinstance(c, type) and issubclass(c, BaseModel)]):
        found.update(_own_field_comments(owner, cls.model_fields))
    return found


def _own_field_comments(cls: type[BaseModel], fields: Iterable[str]) -> dict[str, str]:
    """The comments of the fields among ``fields`` written in ``cls``'s own source."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    found, lines = {}, source.splitlines()
    for number, line in enumerate(lines, start=1):
        match = re.match(r"\s+(\w+)\s*:", line)
        if not match or match.group(1) not in fields or line.lstrip().startswith("#"):
            continue
        above, index = [], number - 1
        while index in comments and lines[index - 1].lstrip().startswith("#"):
            above.insert(0, comments[index])
            index -= 1
        text = comments.get(number) if number in comments and not line.lstrip().startswith("#") else None
        text = text or " ".join(above)
        if text:
            found[match.group(1)] = text
    return found


def describe_fields(schema: dict[str, Any], models: dict[str, type[BaseModel]]) -> None:
    """Give every property of ``schema`` (and of its ``$defs``) without a description the comment
    its model's source has for it; ``models`` maps a schema's title to its model class."""
    for name, sub in [("", schema), *schema.get("$defs", {}).items()]:
        cls = models.get(sub.get("title", name)) or models.get(name)
        if cls is None:
            continue
        comments = field_comments(cls)
        for field, prop in sub.get("properties", {}).items():
            if "description" not in prop and field in comments:
                prop["description"] = comments[field]
