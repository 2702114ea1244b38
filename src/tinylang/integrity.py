"""Content hashes that let a reader notice a file damaged after it was written.

Every checkpoint, training state and language ``meta.json`` carries ``sha256``, the digest of
the rest of its payload (tensors by dtype, shape and bytes; everything else by value), computed
when it is written and checked when it is read: a flipped bit anywhere in the data is a
mismatch. ``meta.json`` also records the SHA-256 of each split's file. Files written before
hashes existed carry none and are read unchecked.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

DIGEST_KEY = "sha256"


def content_digest(obj: Any) -> str:
    """SHA-256 of ``obj``: nested dicts (keys in sorted order), lists, tuples, tensors and plain values."""
    digest = hashlib.sha256()
    _feed(digest, obj)
    return digest.hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _feed(digest: Any, obj: Any) -> None:
    torch = sys.modules.get("torch")  # without torch loaded there are no tensors to hash
    if torch is not None and isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu().contiguous().reshape(-1)
        digest.update(f"tensor {tensor.dtype} {tuple(obj.shape)}:".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        digest.update(b"{")
        for key in sorted(obj, key=repr):
            _feed(digest, key)
            _feed(digest, obj[key])
        digest.update(b"}")
    elif isinstance(obj, (list, tuple)):
        digest.update(b"[")
        for item in obj:
            _feed(digest, item)
        digest.update(b"]")
    else:
        digest.update(json.dumps(obj, default=repr).encode() + b";")


def sealed(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with its content digest under ``sha256``."""
    return {**payload, DIGEST_KEY: content_digest(payload)}


def is_intact(payload: dict[str, Any]) -> bool | None:
    """Whether ``payload`` matches the digest stored in it (None: it stores none)."""
    stored = payload.get(DIGEST_KEY)
    if stored is None:
        return None
    return content_digest({k: v for k, v in payload.items() if k != DIGEST_KEY}) == stored


def brief_error(err: Exception, limit: int = 200) -> str:
    """``Type: first sentence of the message`` on one line, cut to ``limit`` characters: how a
    reader quotes the library error behind a damaged file (not the library's advice after it)."""
    text = " ".join(str(err).split()).split(". ")[0]
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
