"""A tiny name → object registry, one per extensible family (languages, mixers, evaluators).

Besides the names registered with ``@REGISTRY.register("name")``, a registry answers two kinds
of names from outside the package, so that a study can use them without editing tinylang:

- a path ``"module:attribute"`` (``mixer: my_mixers:GatedConv``): the module is imported (from
  the installed packages, ``PYTHONPATH`` or the working directory) and the attribute used;
- the name of an entry point in the registry's group (``tinylang.mixers``, ``tinylang.languages``,
  ``tinylang.evaluators``), which an installed package declares in its ``pyproject.toml``.

Either is checked against the family's base class and then behaves as a registered name. A
registry may also know names whose module it imports only when the entry is first needed
(``modules``), so that naming one, e.g. in a config being validated, imports nothing.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps the name a config uses to the object that implements it."""

    def __init__(self, kind: str, *, base: type | str | None = None, group: str | None = None,
                 modules: dict[str, str] | None = None):
        self.kind = kind
        self.base = base  # a class, or its "module:Class" path (imported when first needed)
        self.group = group  # the entry-point group of outside implementations
        self.modules = dict(modules or {})  # name → the module that registers it on import
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")`` adds the decorated object."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """The entry called ``name``; a KeyError saying what is wrong and what is allowed otherwise."""
        if name not in self._entries and name in self.modules:
            importlib.import_module(self.modules[name])
        if name not in self._entries:
            self._entries[name] = self._checked(name, self._outside(name))
        return self._entries[name]

    def known(self, name: str) -> str:
        """``name`` if it names an entry; a ValueError (for a config validator) saying why not.
        A name in ``modules`` is known without importing its module."""
        if isinstance(name, str) and name in self.modules:
            return name
        try:
            self.get(name)
        except KeyError as err:
            raise ValueError(err.args[0]) from None
        return name

    def names(self) -> list[str]:
        """The registered names and those of the installed entry points."""
        return sorted(set(self._entries) | set(self.modules) | set(self._entry_points()))

    def __contains__(self, name: object) -> bool:
        try:
            self.get(name)  # type: ignore[arg-type]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _outside(self, name: str) -> T:
        if not isinstance(name, str):
            raise KeyError(f"{self.kind} names are strings, not {name!r}")
        if ":" in name:
            return import_object(name, self.kind)
        found = self._entry_points().get(name)
        if found is None:
            raise KeyError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}, "
                           f"or 'module:Class' for one defined outside tinylang")
        try:
            return found.load()
        except Exception as err:
            raise KeyError(f"{self.kind} {name!r}: its entry point {found.value!r} does not load "
                           f"({type(err).__name__}: {err})") from err

    def _checked(self, name: str, obj: T) -> T:
        if isinstance(self.base, str):
            self.base = import_object(self.base, f"{self.kind} base class")
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise KeyError(f"{self.kind} {name!r} is {obj!r}, not a subclass of "
                           f"{self.base.__module__}.{self.base.__qualname__}")
        return obj

    def _entry_points(self) -> dict:
        return {ep.name: ep for ep in entry_points(group=self.group)} if self.group else {}


def import_object(path: str, kind: str = "object"):
    """The attribute a ``"module:attribute"`` path names; a KeyError saying what failed otherwise.

    The working directory is searched after the installed packages, so a module beside the study
    file is found when Snakemake (or Python) runs there.
    """
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise KeyError(f"{kind} {path!r}: a path outside tinylang is 'module:attribute'")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise KeyError(f"{kind} {path!r}: cannot import module {module_name!r} ({err}); install it, "
                       f"put its folder on PYTHONPATH or run from the folder that holds it") from err
    try:
        obj = module
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise KeyError(f"{kind} {path!r}: module {module_name!r} has no attribute {attribute!r}") from None
    return obj
