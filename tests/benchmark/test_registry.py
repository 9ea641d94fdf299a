"""The generic registry: decorator, lazy targets, entry points, did-you-mean."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata

import pytest

from benchmark.errors import UnknownName, UserError
from benchmark.registry import METHODS, REGISTRIES, Registry


def test_decorator_and_get():
    reg: Registry[type] = Registry("widget")

    @reg.register("alpha")
    class Alpha:
        """An alpha widget."""

    assert reg.get("alpha") is Alpha
    assert reg.names() == ["alpha"]
    assert reg.describe("alpha") == "An alpha widget."


def test_lazy_target_is_imported_only_on_get():
    reg: Registry[object] = Registry("thing")
    reg.register_lazy("od", "collections:OrderedDict", "ordered dict")
    assert reg.describe("od") == "ordered dict"
    import collections

    assert reg.get("od") is collections.OrderedDict


def test_unknown_name_suggests_close_match():
    with pytest.raises(UnknownName) as exc:
        METHODS.get("pcaa")
    msg = str(exc.value)
    assert "did you mean 'pca'" in msg and "unknown method 'pcaa'" in msg


def test_bad_lazy_target_is_a_user_error():
    reg: Registry[object] = Registry("thing")
    reg.register_lazy("broken", "no_such_module_xyz:Thing")
    with pytest.raises(UserError, match="no_such_module_xyz"):
        reg.get("broken")


def test_duplicate_registration_is_refused():
    reg: Registry[object] = Registry("thing")
    reg.register("a")(int)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(str)


def test_entry_points_are_discovered(monkeypatch):
    @dataclass(frozen=True)
    class Plugged:
        """A method from another package."""

    module = type(sys)("fake_plugin_pkg")
    module.Plugged = Plugged
    monkeypatch.setitem(sys.modules, "fake_plugin_pkg", module)
    ep = metadata.EntryPoint(name="plugged", value="fake_plugin_pkg:Plugged", group="interpbench.methods")
    real = metadata.entry_points

    def fake(**kw):
        return metadata.EntryPoints([ep]) if kw.get("group") == "interpbench.methods" else real(**kw)

    monkeypatch.setattr(metadata, "entry_points", fake)
    reg: Registry[object] = Registry("method", "interpbench.methods")
    assert "plugged" in reg.names()
    assert reg.get("plugged") is Plugged
    assert reg.source("plugged").startswith("entry point")


def test_builtin_names_are_complete():
    assert {"neurons", "random", "pca", "ica", "kmeans", "nmf", "sparse_coding", "sae_l1", "sae_topk"} <= set(
        METHODS.names()
    )
    assert set(REGISTRIES) == {"methods", "metrics", "datasets", "models", "captioners"}


def test_listing_imports_no_torch():
    code = (
        "import sys; from benchmark.cli import main; main(['list']); "
        "assert 'torch' not in sys.modules, 'interpbench list imported torch'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "sae_topk" in out.stdout and "label_consistency" in out.stdout
