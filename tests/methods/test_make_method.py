"""The method tests' ``make_method`` skips only for a missing optional package: a broken
built-in (a module that does not import, a class that is not there) fails the test."""

from __future__ import annotations

import sys

import pytest

from benchmark.errors import UserError
from benchmark.registry import METHODS, load_object
from tests.methods.conftest import make_method
from tests.optional import missing_optional


@pytest.mark.parametrize("target", ["methods.no_such_module:Broken", "methods.pca:NoSuchClass"])
def test_a_broken_builtin_fails(monkeypatch, target):
    monkeypatch.setattr(METHODS, "get", lambda name: load_object(target))
    with pytest.raises(UserError, match="no_such_module|NoSuchClass"):
        make_method("pca")


def test_a_missing_optional_package_skips(monkeypatch):
    monkeypatch.setitem(sys.modules, "sae_lens", None)  # import sae_lens -> ModuleNotFoundError
    monkeypatch.setattr(METHODS, "get", lambda name: load_object("sae_lens:SAE"))
    with pytest.raises(pytest.skip.Exception, match="optional package 'sae_lens'"):
        make_method("pca")


def test_missing_optional_names_only_allowed_packages():
    assert missing_optional(ModuleNotFoundError("x", name="ray.util")) == "ray"
    assert missing_optional(ModuleNotFoundError("x", name="methods.pca")) is None  # a built-in: fail
    assert missing_optional(ImportError("cannot import name 'X'", name="sae_lens")) is None  # installed, broken
    wrapped = UserError("cannot import")
    wrapped.__cause__ = ModuleNotFoundError("x", name="lpips")
    assert missing_optional(wrapped) == "lpips"
