"""One generic registry for every kind of plugin: methods, metrics, datasets, models, captioners.

Entries are registered three ways:

* ``@REG.register("name")`` on a class or factory (plugins that are already imported);
* ``REG.register_lazy("name", "package.module:attr", "one-line description")`` so that
  listing names never imports heavy modules (torch, transformers);
* the entry-point group ``interpbench.<kind>`` of any installed distribution, e.g. in a
  plugin's ``pyproject.toml``::

      [project.entry-points."interpbench.methods"]
      my_method = "my_pkg.methods:MyMethod"
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar

from benchmark.errors import UnknownName, UserError

T = TypeVar("T")


@dataclass
class _Entry:
    target: Any  # the object, or a "module:attr" string until first use
    description: str
    source: str  # "builtin", "decorator" or "entry point <dist>"


def load_object(target: str) -> Any:
    """Import ``"package.module:attr"`` and return ``attr``."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"plugin target {target!r} is not of the form 'package.module:attr'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"cannot import {module_name!r} for plugin {target!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise UserError(f"module {module_name!r} has no attribute {attr!r}") from exc
    return obj


def _first_line(obj: Any) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().split("\n")[0].strip()


class Registry(Generic[T]):
    """A named collection of plugins of one kind.

    Args:
        kind: what the entries are ("method", "metric", ...), used in messages.
        entry_point_group: the importlib.metadata group scanned for third-party plugins.
        builtins: a callable that registers the built-in entries lazily on first use.
    """

    def __init__(
        self,
        kind: str,
        entry_point_group: str | None = None,
        builtins: Callable[[Registry[T]], None] | None = None,
    ) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._builtins = builtins
        self._entries: dict[str, _Entry] = {}
        self._discovered = False

    # -- registration -----------------------------------------------------------------
    def register(self, name: str, description: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@METHODS.register("pca")``."""

        def deco(obj: T) -> T:
            self._add(name, obj, description or _first_line(obj), "decorator")
            return obj

        return deco

    def register_lazy(self, name: str, target: str, description: str = "") -> None:
        """Register ``"package.module:attr"`` without importing it."""
        self._add(name, target, description, "builtin")

    def _add(self, name: str, target: Any, description: str, source: str) -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        old = self._entries.get(name)
        if old is not None and isinstance(old.target, str) and not isinstance(target, str):
            # the module behind a lazy entry was imported and its decorator ran: resolve it
            target_desc = old.description or description
            self._entries[name] = _Entry(target, target_desc, old.source)
            return
        if old is not None and old.target is not target and old.target != target:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({old.source} and {source})")
        self._entries[name] = _Entry(target, description, source)

    # -- discovery --------------------------------------------------------------------
    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        if self._builtins is not None:
            self._builtins(self)
        if self.entry_point_group:
            for ep in metadata.entry_points(group=self.entry_point_group):
                if ep.name in self._entries:
                    continue
                dist = ep.dist.name if ep.dist is not None else "?"
                self._entries[ep.name] = _Entry(ep.value, "", f"entry point {dist}")

    # -- lookup -----------------------------------------------------------------------
    def names(self) -> list[str]:
        """All registered names, sorted."""
        self._discover()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries

    def get(self, name: str) -> T:
        """The plugin called ``name``; raises :class:`UnknownName` with close matches."""
        self._discover()
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownName(self.unknown_message(name))
        if isinstance(entry.target, str):
            entry.target = load_object(entry.target)
        return entry.target

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (valid: {', '.join(self.names())})"

    def describe(self, name: str) -> str:
        """One-line description, without importing the plugin when it has one already."""
        self._discover()
        entry = self._entries[name]
        if entry.description:
            return entry.description
        try:
            return _first_line(self.get(name))
        except UserError as exc:
            return f"(cannot import: {exc})"

    def source(self, name: str) -> str:
        self._discover()
        return self._entries[name].source


def _builtins(kind: str) -> Callable[[Registry[Any]], None]:
    def register_builtins(reg: Registry[Any]) -> None:
        from benchmark import builtins

        for name, target, description in getattr(builtins, kind.upper()):
            if name not in reg._entries:
                reg.register_lazy(name, target, description)

    return register_builtins


METHODS: Registry[Any] = Registry("method", "interpbench.methods", _builtins("methods"))
METRICS: Registry[Any] = Registry("metric", "interpbench.metrics", _builtins("metrics"))
DATASETS: Registry[Any] = Registry("dataset", "interpbench.datasets", _builtins("datasets"))
MODELS: Registry[Any] = Registry("model", "interpbench.models", _builtins("models"))
CAPTIONERS: Registry[Any] = Registry("captioner", "interpbench.captioners", _builtins("captioners"))

REGISTRIES: dict[str, Registry[Any]] = {
    "methods": METHODS,
    "metrics": METRICS,
    "datasets": DATASETS,
    "models": MODELS,
    "captioners": CAPTIONERS,
}
