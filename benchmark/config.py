"""TOML configs parsed into frozen dataclasses, with errors that name key, file and line.

A config names the grid: tasks (model x layers x dataset), methods, metrics and seeds::

    name = "quick"
    seeds = [0]

    [[tasks]]
    model = "shapes_cnn_untrained"
    layers = ["conv2"]
    dataset = "shapes"
    dataset_params = { n = 2000 }

    [[methods]]
    name = "sae_topk"
    params = { expansion = 4.0 }
    sweep = { k = [4, 8, 16] }      # one method entry per value (a grid when several keys)

    [[metrics]]
    name = "label_consistency"
    sweep = { protocol = ["consistency", "psychophysics"] }

Configs are data: they are parsed, never executed. ``plugins = ["my_pkg.my_methods"]``
imports the named modules explicitly, so their ``@register`` decorators run.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
import itertools
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.errors import UserError


@dataclass(frozen=True)
class TaskSpec:
    """One model on one dataset, read at one or more layers."""

    model: str
    layers: tuple[str, ...]
    dataset: str
    model_params: dict[str, Any] = field(default_factory=dict)
    dataset_params: dict[str, Any] = field(default_factory=dict)
    fit_fraction: float = 0.5
    split_seed: int = 0
    #: cap on samples taken from the dataset (None = all); a seeded subset
    max_samples: int | None = None
    #: how conv maps become vectors: "mean" or "max" over space
    spatial: str = "mean"
    #: held-out samples for downstream fidelity (accuracy / loss recovered); 0 turns it off
    fidelity_samples: int = 256


@dataclass(frozen=True)
class PluginSpec:
    """A method or metric by registered name, with parameters and an optional sweep."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, list[Any]] = field(default_factory=dict)

    def expand(self) -> list[dict[str, Any]]:
        """The parameter dicts of the sweep's grid (just ``params`` without a sweep)."""
        if not self.sweep:
            return [dict(self.params)]
        keys = sorted(self.sweep)
        return [
            {**self.params, **dict(zip(keys, values))} for values in itertools.product(*(self.sweep[k] for k in keys))
        ]


#: executor names: cells one after another here, in worker processes here, or as Ray tasks
EXECUTORS = ("local", "processes", "ray")


@dataclass(frozen=True)
class Config:
    """A whole benchmark grid."""

    tasks: tuple[TaskSpec, ...]
    methods: tuple[PluginSpec, ...]
    metrics: tuple[PluginSpec, ...]
    name: str = "run"
    seeds: tuple[int, ...] = (0,)
    device: str = "auto"
    executor: str = "local"
    #: random index sets per metric that give its chance level
    chance_sets: int = 32
    #: activations on disk: "float16" or "float32"
    dtype: str = "float32"
    batch_size: int = 256
    #: cap on fit-split rows a method sees (None = all)
    max_fit_samples: int | None = None
    plugins: tuple[str, ...] = ()
    source: str = "<config>"

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in, as JSON-able data."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------
def _line_of(text: str, key: str) -> int | None:
    m = re.search(rf"^\s*{re.escape(key)}\s*=|[{{,]\s*{re.escape(key)}\s*=", text, flags=re.M)
    return text.count("\n", 0, m.start()) + 1 if m else None


class _Ctx:
    def __init__(self, path: str, text: str) -> None:
        self.path, self.text = path, text

    def error(self, key: str, message: str) -> UserError:
        line = _line_of(self.text, key.split(".")[-1].split("]")[-1])
        where = f"{self.path}:{line}" if line else self.path
        return UserError(f"{where}: {key}: {message}")


def _type_ok(value: Any, hint: Any) -> Any:
    """Check (and coerce lists to tuples) ``value`` against a simple type hint; raise TypeError."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(hint):
            try:
                return _type_ok(value, option)
            except TypeError:
                continue
        raise TypeError
    if hint is type(None):
        if value is None:
            return None
        raise TypeError
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise TypeError
        (item,) = typing.get_args(hint)[:1]
        return tuple(_type_ok(v, item) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError
        return dict(value)
    if origin is list:
        if not isinstance(value, list):
            raise TypeError
        return list(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError
        return float(value)
    if hint is int and isinstance(value, bool):
        raise TypeError
    if not isinstance(value, hint):
        raise TypeError
    return value


def _build(cls: type, data: Any, ctx: _Ctx, where: str) -> Any:
    if not isinstance(data, dict):
        raise ctx.error(where, f"expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        import difflib

        key = unknown[0]
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ctx.error(f"{where}.{key}" if where else key, f"unknown key{hint} (valid: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ctx.error(f"{where}.{name}" if where else name, "is required")
            continue
        try:
            kwargs[name] = _type_ok(data[name], hints[name])
        except TypeError:
            shown = str(hints[name]).replace("typing.", "")
            raise ctx.error(
                f"{where}.{name}" if where else name,
                f"expected {shown}, got {type(data[name]).__name__} {data[name]!r}",
            ) from None
    return cls(**kwargs)


def parse_config(text: str, path: str = "<config>") -> Config:
    """Parse and validate TOML ``text``; errors name the key, ``path`` and line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    ctx = _Ctx(path, text)
    for section in ("tasks", "methods", "metrics"):
        if not isinstance(data.get(section), list) or not data[section]:
            raise ctx.error(section, f"needs at least one [[{section}]] table")
    raw = dict(data)
    tasks = tuple(_build(TaskSpec, t, ctx, f"tasks[{i}]") for i, t in enumerate(raw.pop("tasks")))
    methods = tuple(_build(PluginSpec, m, ctx, f"methods[{i}]") for i, m in enumerate(raw.pop("methods")))
    metrics = tuple(_build(PluginSpec, m, ctx, f"metrics[{i}]") for i, m in enumerate(raw.pop("metrics")))
    raw.setdefault("name", Path(path).stem if not path.startswith("<") else "run")
    top = _build(Config, {**raw, "tasks": [], "methods": [], "metrics": []}, ctx, "")
    config = dataclasses.replace(top, tasks=tasks, methods=methods, metrics=metrics, source=path)
    validate(config, ctx)
    return config


def validate(config: Config, ctx: _Ctx) -> None:
    """Check plugin names and parameters against the registries."""
    from benchmark.registry import DATASETS, METHODS, METRICS, MODELS

    for module in config.plugins:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ctx.error("plugins", f"cannot import plugin module {module!r}: {exc}") from None
    if config.device not in ("auto", "cpu") and not config.device.startswith("cuda"):
        raise ctx.error("device", f"unknown device {config.device!r} (valid: auto, cpu, cuda, cuda:N)")
    if config.executor not in EXECUTORS:
        raise ctx.error("executor", f"unknown executor {config.executor!r} (valid: {', '.join(EXECUTORS)})")
    if config.dtype not in ("float16", "float32"):
        raise ctx.error("dtype", f"must be float16 or float32, got {config.dtype!r}")
    if not config.seeds:
        raise ctx.error("seeds", "needs at least one seed")
    for i, t in enumerate(config.tasks):
        model_name = t.model.split(":", 1)[0] if ":" in t.model else t.model
        if model_name not in MODELS:
            raise ctx.error(f"tasks[{i}].model", MODELS.unknown_message(model_name))
        if t.dataset not in DATASETS:
            raise ctx.error(f"tasks[{i}].dataset", DATASETS.unknown_message(t.dataset))
        if not t.layers:
            raise ctx.error(f"tasks[{i}].layers", "needs at least one layer")
        if t.spatial not in ("mean", "max"):
            raise ctx.error(f"tasks[{i}].spatial", f"must be 'mean' or 'max', got {t.spatial!r}")
    for section, reg, specs in (("methods", METHODS, config.methods), ("metrics", METRICS, config.metrics)):
        for i, spec in enumerate(specs):
            if spec.name not in reg:
                raise ctx.error(f"{section}[{i}].name", reg.unknown_message(spec.name))
            for key, values in spec.sweep.items():
                if not isinstance(values, list) or not values:
                    raise ctx.error(f"{section}[{i}].sweep.{key}", "must be a non-empty list of values")
            for params in spec.expand():
                instantiate(reg.get(spec.name), params, f"{section}[{i}] ({spec.name})", ctx)


def instantiate(cls: type, params: dict[str, Any], where: str, ctx: _Ctx | None = None) -> Any:
    """``cls(**params)`` with errors that list the valid parameters."""
    valid = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
    unknown = sorted(set(params) - set(valid)) if valid else []
    if unknown:
        msg = f"unknown parameter {unknown[0]!r} (valid: {', '.join(valid) or 'none'})"
        raise ctx.error(f"{where}.params.{unknown[0]}", msg) if ctx else UserError(f"{where}: {msg}")
    try:
        return cls(**params)
    except UserError as exc:
        raise (ctx.error(f"{where}.params", str(exc)) if ctx else exc) from None
    except (TypeError, ValueError) as exc:
        raise (ctx.error(f"{where}.params", str(exc)) if ctx else UserError(f"{where}: {exc}")) from None


def load_config(name_or_path: str | Path) -> Config:
    """Load a shipped config by name (``quick``, ``default``) or a TOML file by path."""
    p = Path(name_or_path)
    if p.suffix != ".toml" and not p.exists():
        shipped = importlib.resources.files("benchmark") / "configs" / f"{name_or_path}.toml"
        if shipped.is_file():
            return parse_config(shipped.read_text(), f"{name_or_path}.toml")
        names = sorted(
            f.name[:-5]
            for f in (importlib.resources.files("benchmark") / "configs").iterdir()
            if f.name.endswith(".toml")
        )
        raise UserError(f"no config {str(name_or_path)!r}: not a file, and not a shipped config ({', '.join(names)})")
    if not p.is_file():
        raise UserError(f"config file {str(p)!r} does not exist")
    return parse_config(p.read_text(), str(p))
