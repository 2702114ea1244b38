"""Names a package exports but imports only on first use (its torch half, say), so that
importing the package itself stays cheap."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_attributes(package: str, where: dict[str, str | None]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: name → the submodule that defines it (None:
    the name is that submodule itself), imported when the name is first read."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = import_module(f"{package}.{where[name] or name}")
        return module if where[name] is None else getattr(module, name)

    return __getattr__
