"""Digests of the code that computes a cached stage, so that a code change is a cache miss.

Rule: the digest of a set of *roots* (modules, classes or plugin instances) is a hash of the
source bytes of each root's module and of every module it imports inside this project
(``benchmark``, ``methods``, ``metrics``), transitively. Imports are read statically from the
source, including the imports inside functions (the lazy imports of heavy modules), so a
metric in ``metrics/label.py`` also digests ``metrics/base.py``, ``metrics/protocols.py`` and
``metrics/features.py``. Any byte change counts, comments included: a digest is a pure function
of file bytes, so worker processes compute the same one.

:data:`EXCLUDED` lists modules that cannot change what a stage stores; the import walk neither
digests them nor follows their imports (a root itself is always digested). They are the
reporting and leaderboard code that reads result tables (the tables are rebuilt from cache
entries on every run), the CLI, the executors (which process runs a cell, not what it
computes), the environment and provenance records, the cache and this module (key machinery:
a change there that matters changes the keys by itself), and the config, registry and error
modules (names, values and messages: configured values enter keys by value, and a registered
name's class is digested through its own module). Everything else counts, the harness core included: a stage
the runner computes digests ``benchmark/runner.py`` and what it imports (activations, top-k,
``methods/base.py``, ``metrics/base.py``, ...), so editing the runner recomputes activations,
bases and scores, but not trained models or cleaned data, whose stages digest their own modules.

A plugin that reaches another plugin by its registered name rather than an import (a metric on
a named backbone model or captioner) names it in an optional ``code_roots()`` method; the
runner adds those to the metric's roots.

Third-party plugins (entry points, a config's ``plugins`` modules) are digested by their own
module file plus the project modules it imports; other modules of their own package are not
followed, so a change there still needs a ``version`` bump. A class without a source file
(defined in a notebook) is digested by :func:`inspect.getsource` where that works.

Digests are memoised per process (parsing the few hundred KB of a closure takes milliseconds);
:func:`clear_memo` forgets them, for a process that reloads edited code.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("benchmark", "methods", "metrics")

#: modules (and packages, with everything under them) that cannot change a cached stage
EXCLUDED = (
    "benchmark.cache",
    "benchmark.cli",
    "benchmark.codedigest",
    "benchmark.compare",
    "benchmark.config",
    "benchmark.env",
    "benchmark.errors",
    "benchmark.executors",
    "benchmark.language_report",
    "benchmark.leaderboard",
    "benchmark.plots",
    "benchmark.provenance",  # on main since the provenance merge: the run's provenance record
    "benchmark.registry",
    "benchmark.builtins",
    "benchmark.report",
    "benchmark.results",
    "benchmark.stats",
    "benchmark.validity",
)


def clear_memo() -> None:
    """Forget every memoised file and closure digest (after editing code in a live process)."""
    _parse.cache_clear()
    _project_file.cache_clear()
    _closure_digest.cache_clear()


def code_digest(*roots: object) -> str:
    """Digest of the code of ``roots`` and the project modules they import (see the module doc).

    Args:
        roots: module names (``"benchmark.topk"``), modules, classes, or instances (their class).
    """
    return _closure_digest(tuple(sorted({_resolve(r) for r in roots})))


def project_closure(*roots: object) -> list[str]:
    """The module names a digest of ``roots`` covers, sorted (for tests and ``--debug``)."""
    names: set[str] = set()
    for name, path, _ in (_resolve(r) for r in roots):
        names.add(name)
        if path:
            names |= _walk(Path(path), name)
    return sorted(names)


# -- resolution -------------------------------------------------------------------------------
def _resolve(root: object) -> tuple[str, str, str]:
    """``(module name, source file or "", fallback source text or "")`` of a root."""
    if isinstance(root, str):
        path = _project_file(root)
        if path is None and root in sys.modules:
            return _resolve(sys.modules[root])
        if path is None:
            spec = importlib.util.find_spec(root)
            origin = spec.origin if spec is not None else None
            path = Path(origin).resolve() if origin and Path(origin).is_file() else None
        return root, str(path or ""), "" if path else f"<no source: {root}>"
    if isinstance(root, ModuleType):
        file = getattr(root, "__file__", None)
        return root.__name__, str(Path(file).resolve()) if file else "", ""
    cls = root if isinstance(root, type) else type(root)
    name = cls.__module__
    module = sys.modules.get(name)
    file = getattr(module, "__file__", None) if module is not None else None
    if file and Path(file).exists():
        return name, str(Path(file).resolve()), ""
    try:
        return name, "", inspect.getsource(cls)
    except (OSError, TypeError):
        return name, "", f"<no source: {cls.__qualname__}>"


@functools.cache
def _project_file(name: str) -> Path | None:
    """The source file of project module ``name`` (``a/b.py`` or ``a/b/__init__.py``), or None."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = PROJECT_ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _excluded(name: str) -> bool:
    return any(name == x or name.startswith(x + ".") for x in EXCLUDED)


# -- the import walk --------------------------------------------------------------------------
#: ``import a.b, c as d`` / ``from .x import (y, z)`` at the start of a line (also inside functions)
_IMPORT = re.compile(
    rb"^[ \t]*(?:from[ \t]+(?P<base>\.*[\w.]*)[ \t]+import[ \t]+(?P<names>\([^)]*\)|[^\n;]*)"
    rb"|import[ \t]+(?P<modules>[^\n;]*))",
    re.MULTILINE,
)


def _names(text: bytes) -> list[str]:
    """``"(a, b as c,  # note\n d)"`` -> ``["a", "b", "d"]``."""
    text = re.sub(rb"#[^\n]*", b"", text).strip(b"()")
    return [n.split()[0].decode() for n in text.replace(b"\n", b",").split(b",") if n.split()]


@functools.cache
def _parse(path: str) -> tuple[str, tuple[str, ...]]:
    """``(digest of the file's bytes, project modules it imports, with their parent packages)``.

    Imports are found with a regular expression (parsing with :mod:`ast` costs ~100x more); a
    match inside a string can only add a module, which costs a recompute, never a stale entry.
    """
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    package = _package_of(Path(path))
    found: set[str] = set()
    for m in _IMPORT.finditer(data):
        if m["modules"] is not None:
            found.update(_names(m["modules"]))
            continue
        raw = m["base"].decode()
        base = _absolute(raw.lstrip(".") or None, len(raw) - len(raw.lstrip(".")), package)
        if base is None:
            continue
        found.add(base)
        found.update(f"{base}.{name}" for name in _names(m["names"]))  # submodules, when they are
    modules = {m for name in found for m in _with_parents(name) if _project_file(m) is not None}
    return digest, tuple(sorted(modules))


def _package_of(path: Path) -> str | None:
    """The dotted package a project file lives in (for relative imports), else None."""
    try:
        rel = path.resolve().relative_to(PROJECT_ROOT)
    except ValueError:
        return None
    return ".".join(rel.parts[:-1])  # a module's package; an ``__init__.py``'s own package


def _absolute(module: str | None, level: int, package: str | None) -> str | None:
    if level == 0:
        return module
    if not package:
        return None
    parts = package.split(".")
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c`` (importing a module runs its packages' ``__init__``)."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _walk(path: Path, name: str) -> set[str]:
    """Project modules reachable from the file ``path`` (module ``name``), not through EXCLUDED."""
    seen: set[str] = set()
    todo = list(_parse(str(path))[1])
    while todo:
        mod = todo.pop()
        if mod in seen or mod == name or _excluded(mod):
            continue
        seen.add(mod)
        todo.extend(_parse(str(_project_file(mod)))[1])
    return seen


@functools.cache
def _closure_digest(roots: tuple[tuple[str, str, str], ...]) -> str:
    files: dict[str, str] = {}
    h = hashlib.sha256()
    for name, path, text in roots:
        if path:
            files[name] = _parse(path)[0]
            files.update({m: _parse(str(_project_file(m)))[0] for m in _walk(Path(path), name)})
        else:
            files[name] = hashlib.sha256(text.encode()).hexdigest()
    for name in sorted(files):
        h.update(f"{name}\0{files[name]}\0".encode())
    return h.hexdigest()
