"""Config parsing: defaults, sweeps, and errors that name key, file and line."""

from __future__ import annotations

import pytest

from benchmark.config import load_config, parse_config
from benchmark.errors import UserError

GOOD = """
name = "t"
seeds = [0, 1]

[[tasks]]
model = "shapes_cnn_untrained"
layers = ["conv2", "conv3"]
dataset = "shapes"
dataset_params = { n = 300 }

[[methods]]
name = "pca"
sweep = { n_components = [4, 8] }

[[metrics]]
name = "label_consistency"
"""


def test_parse_fills_defaults_and_expands_sweeps():
    cfg = parse_config(GOOD, "good.toml")
    assert cfg.name == "t" and cfg.seeds == (0, 1) and cfg.device == "auto"
    assert cfg.tasks[0].layers == ("conv2", "conv3") and cfg.tasks[0].fit_fraction == 0.5
    assert cfg.methods[0].expand() == [{"n_components": 4}, {"n_components": 8}]
    resolved = cfg.resolved()
    assert resolved["chance_sets"] == 32 and resolved["tasks"][0]["split_seed"] == 0


@pytest.mark.parametrize(
    "edit, expected",
    [
        (("seeds = [0, 1]", "seeds = [0, 1]\nsedes = 3"), r"bad\.toml:\d+: sedes: unknown key; did you mean 'seeds'"),
        (("seeds = [0, 1]", 'seeds = "zero"'), r"bad\.toml:3: seeds: expected tuple\[int, \.\.\.\], got str"),
        (('name = "pca"', 'name = "pcaa"'), r"methods\[0\]\.name: unknown method 'pcaa'; did you mean 'pca'"),
        (('dataset = "shapes"', 'dataset = "shape"'), r"unknown dataset 'shape'; did you mean 'shapes'"),
        (("n_components = [4, 8]", "n_compnents = [4, 8]"), r"unknown parameter 'n_compnents' \(valid: n_components[,)]"),
        (("[[metrics]]", "[[metrix]]"), r"metrics: needs at least one \[\[metrics\]\] table|unknown key"),
        (('layers = ["conv2", "conv3"]', "layers = []"), r"layers: needs at least one layer"),
        (("seeds = [0, 1]", "seeds = [0, 1"), r"not valid TOML"),
    ],
)
def test_errors_name_key_file_and_line(edit, expected):
    text = GOOD.replace(*edit)
    with pytest.raises(UserError, match=expected):
        parse_config(text, "bad.toml")


def test_shipped_configs_load():
    cfg = load_config("quick")
    assert cfg.name == "quick" and cfg.tasks


def test_missing_file_and_unknown_shipped_name():
    with pytest.raises(UserError, match="does not exist"):
        load_config("/nonexistent/x.toml")
    with pytest.raises(UserError, match="not a shipped config"):
        load_config("no_such_config")


def test_plugins_are_imported_not_evaluated(tmp_path, monkeypatch):
    (tmp_path / "my_plugin_mod.py").write_text(
        "from dataclasses import dataclass\n"
        "from benchmark.registry import METHODS\n"
        "from methods.neurons import Neurons\n"
        "@METHODS.register('my_neurons')\n"
        "@dataclass(frozen=True)\n"
        "class MyNeurons(Neurons):\n"
        "    '''Neurons again, from a user plugin.'''\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    text = 'plugins = ["my_plugin_mod"]\n' + GOOD.replace('name = "pca"', 'name = "my_neurons"').replace(
        "sweep = { n_components = [4, 8] }", ""
    )
    cfg = parse_config(text, "p.toml")
    assert cfg.methods[0].name == "my_neurons"
    with pytest.raises(UserError, match="cannot import plugin module '__import__\\(\"os\"\\)'"):
        parse_config('plugins = ["__import__(\\"os\\")"]\n' + GOOD, "evil.toml")
