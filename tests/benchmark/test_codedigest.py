"""Stage keys carry a digest of the code that computes the stage: an unversioned change recomputes."""

from __future__ import annotations

import uuid
from pathlib import Path

from benchmark.cache import Cache
from benchmark.codedigest import clear_memo, code_digest, project_closure
from benchmark.config import parse_config
from benchmark.runner import Runner

METHOD = '''
"""A method plugin (tests/benchmark/test_codedigest.py): PCA under another name."""
from dataclasses import dataclass

from benchmark.registry import METHODS
from methods.pca import PCA


@METHODS.register("{name}")
@dataclass(frozen=True)
class PluginPCA(PCA):
    version = "1"
'''

METRIC = '''
"""A metric plugin (tests/benchmark/test_codedigest.py): label consistency under another name."""
from dataclasses import dataclass

from benchmark.registry import METRICS
from metrics.label import LabelConsistency


@METRICS.register("{name}")
@dataclass(frozen=True)
class PluginLabels(LabelConsistency):
    pass
'''

GRID = """
name = "codedigest"
seeds = [0]
chance_sets = 4
plugins = ["{method_module}", "{metric_module}"]

[[tasks]]
model = "shapes_cnn_untrained"
model_params = {{ width = 8 }}
layers = ["conv2"]
dataset = "shapes"
dataset_params = {{ n = 200, size = 16 }}

[[methods]]
name = "neurons"

[[methods]]
name = "{method}"

[[metrics]]
name = "{metric}"
sweep = {{ protocol = ["consistency"] }}
"""


def test_a_metric_digests_the_project_modules_it_imports_not_reporting_code():
    names = project_closure("metrics.label")
    assert {"metrics.label", "metrics.base", "metrics.protocols", "benchmark.data.base"} <= set(names)
    core = project_closure("benchmark.runner")
    assert {"benchmark.topk", "benchmark.activations", "methods.base", "metrics.base"} <= set(core)
    for excluded in ("benchmark.leaderboard", "benchmark.report.gallery", "benchmark.cli", "benchmark.results"):
        assert excluded not in core
    assert "benchmark.report.gallery" in project_closure("benchmark.report.gallery")  # a root always counts


def test_digest_is_a_function_of_file_bytes(tmp_path, monkeypatch):
    module = f"ck_bytes_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{module}.py"
    path.write_text("from metrics.label import LabelConsistency\nX = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = code_digest(module)
    assert code_digest(module) == first and first != code_digest("metrics.label")
    path.write_text("from metrics.label import LabelConsistency\nX = 1  # a comment is a change too\n")
    assert code_digest(module) == first  # memoised for the process ...
    clear_memo()
    assert code_digest(module) != first  # ... and recomputed from the bytes once forgotten


def _counts(records) -> dict[str, tuple[int, int]]:
    """``{stage: (computed, reused)}``."""
    out: dict[str, list[int]] = {}
    for r in records:
        out.setdefault(r.stage, [0, 0])[0 if r.computed else 1] += 1
    return {s: (c, u) for s, (c, u) in out.items()}


def _run(text: str, tmp_path: Path) -> dict[str, tuple[int, int]]:
    cache = Cache(tmp_path / "cache")
    Runner(parse_config(text, "codedigest.toml"), cache, results_dir=tmp_path / "r", progress=False).run()
    return _counts(cache.records)


def test_editing_a_plugin_without_a_version_bump_recomputes_its_stages(tmp_path, monkeypatch):
    tag = uuid.uuid4().hex[:8]
    names = {
        "method_module": f"ck_method_{tag}",
        "metric_module": f"ck_metric_{tag}",
        "method": f"ck_pca_{tag}",
        "metric": f"ck_labels_{tag}",
    }
    method_file = tmp_path / f"{names['method_module']}.py"
    metric_file = tmp_path / f"{names['metric_module']}.py"
    method_file.write_text(METHOD.format(name=names["method"]))
    metric_file.write_text(METRIC.format(name=names["metric"]))
    monkeypatch.syspath_prepend(str(tmp_path))
    text = GRID.format(**names)

    first = _run(text, tmp_path)
    assert {s: first[s][0] for s in ("basis", "top", "score", "chance")} == {
        "basis": 2,
        "top": 2,
        "score": 2,
        "chance": 1,
    }
    unchanged = _run(text, tmp_path)
    assert all(computed == 0 for computed, _ in unchanged.values()), unchanged

    # the method's code changes, its version does not: its basis, top sets, scores and gallery
    # are recomputed; the neurons cell, the data, the activations and the chance levels are reused
    method_file.write_text(method_file.read_text() + "\n\ndef helper():\n    return 1\n")
    clear_memo()
    after_method = _run(text, tmp_path)
    assert after_method["activations"][0] == after_method["hygiene"][0] == after_method["chance"][0] == 0
    assert after_method["basis"] == after_method["top"] == after_method["score"] == (1, 1)
    assert after_method["gallery"] == (1, 1)

    # the metric's code changes: its scores and chance levels are recomputed, no basis is
    metric_file.write_text(metric_file.read_text() + "\n\nTHRESHOLD = 0.5\n")
    clear_memo()
    after_metric = _run(text, tmp_path)
    assert after_metric["basis"] == after_metric["top"] == (0, 2)
    assert after_metric["score"] == (2, 0)
    assert after_metric["chance"] == (1, 1)  # one chance level per metric, shared by both cells
    assert after_metric["activations"][0] == 0


def test_a_metric_on_a_named_backbone_digests_the_backbone_module():
    """``perceptual_consistency`` reaches its model through the registry, not an import."""
    from benchmark.runner import stage_code
    from metrics.perceptual import PerceptualConsistency

    cnn = PerceptualConsistency(model="shapes_cnn_untrained")
    assert cnn.code_roots()[0].__module__ == "benchmark.models.cnn"
    assert stage_code(cnn) == code_digest("benchmark.runner", cnn, "benchmark.models.cnn")
    assert stage_code(cnn) != stage_code(PerceptualConsistency(model="efficientnet_lite0"))
