"""What a run was (config, tasks, environment) and the generated ``results/README.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.results import TASK_KEYS

#: the hand-written changelog of the published numbers, linked from the README when present
CHANGES = "CHANGES.md"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _plugin_text(spec: dict) -> str:
    parts = [f"{k}={v}" for k, v in sorted((spec.get("params") or {}).items())]
    parts += [f"{k} in {list(v)}" for k, v in sorted((spec.get("sweep") or {}).items())]
    return f"{spec['name']}({', '.join(parts)})" if parts else spec["name"]


def describe_run(run_dir: Path, fits: pd.DataFrame | None = None) -> dict[str, Any]:
    """A JSON-able description of a run from its directory: config, tasks, environment, stages.

    Keys: ``run_id, config_name, seeds, chance_sets, methods, metrics, tasks`` (one dict per
    model x layer x dataset with fit/probe sample counts and a ``hygiene`` text: what stimulus
    hygiene removed), ``datasets`` (the run's ``datasets.json``), ``environment``,
    ``provenance`` (its ``provenance.json``; ``{}`` for a run made before that) and ``stages``.
    """
    run_dir = Path(run_dir)
    config = _read_json(run_dir / "config.json")
    env = _read_json(run_dir / "environment.json")
    manifests = _read_json(run_dir / "datasets.json")
    tasks = []
    for spec in config.get("tasks", []):
        for layer in spec.get("layers", []):
            row = {
                "model": spec["model"],
                "layer": layer,
                "dataset": spec["dataset"],
                "dataset_params": ", ".join(f"{k}={v}" for k, v in sorted((spec.get("dataset_params") or {}).items())),
                "n_fit": "",
                "n_probe": "",
                "hygiene": _hygiene_text(manifests.get(f"{spec['model']}/{layer}/{spec['dataset']}")),
            }
            if fits is not None and len(fits):
                f = fits[
                    (fits["model"] == row["model"]) & (fits["layer"] == layer) & (fits["dataset"] == row["dataset"])
                ]
                if len(f):
                    row.update(
                        n_fit=int(f["n_fit"].iloc[0]), n_probe=int(f["n_probe"].iloc[0]), modality=f["modality"].iloc[0]
                    )
            tasks.append(row)
    if not tasks and fits is not None and len(fits):
        for key, f in fits.groupby(TASK_KEYS, sort=True):
            tasks.append({**dict(zip(TASK_KEYS, key)), "dataset_params": "", "n_fit": int(f["n_fit"].iloc[0]),
                          "n_probe": int(f["n_probe"].iloc[0]),
                          "hygiene": _hygiene_text(manifests.get("/".join(map(str, key))))})  # fmt: skip
    stages = []
    if (run_dir / "stages.csv").exists():
        stages = pd.read_csv(run_dir / "stages.csv").to_dict("records")
    run_id = str(fits["run_id"].iloc[0]) if fits is not None and len(fits) else run_dir.name
    return {
        "run_id": run_id,
        "config_name": config.get("name", "?"),
        "config_source": config.get("source", ""),
        "seeds": config.get("seeds", sorted(fits["seed"].unique().tolist()) if fits is not None and len(fits) else []),
        "chance_sets": config.get("chance_sets", ""),
        "methods": [_plugin_text(m) for m in config.get("methods", [])],
        "metrics": [_plugin_text(m) for m in config.get("metrics", [])],
        "tasks": tasks,
        "datasets": manifests,
        "environment": env,
        "provenance": _read_json(run_dir / "provenance.json"),
        "stages": stages,
    }


def _hygiene_text(manifest: dict | None) -> str:
    """``"8,103 -> 6,310 (685 exact, 48 near, 130 blank, 930 label conflicts)"`` or ``""``."""
    h = (manifest or {}).get("hygiene")
    if not h:
        return ""
    return (
        f"{h['n_input']:,} -> {h['n_kept']:,} ({h['exact_duplicates']:,} exact, {h['near_duplicates']:,} near, "
        f"{h['blank']:,} blank, {h['label_conflicts']:,} label conflicts)"
    )


def _commit_text(git: dict | None) -> str:
    if not git:
        return "not a git checkout"
    dirty = f" (dirty: {git.get('changed_files', '?')} files changed)" if git.get("dirty") else " (clean)"
    return f"`{git['commit'][:12]}`{dirty}"


def _constraints_text(lock: dict | None) -> str:
    if not lock:
        return "none (not run from a checkout with constraints.txt)"
    differ = sorted(lock.get("mismatched") or {})
    state = f"{len(differ)} installed versions differ: {', '.join(differ)}" if differ else "all installed as pinned"
    return f"`{lock['file']}` sha256 `{lock['sha256'][:16]}` ({lock['pins']} pins; {state})"


def _quality_text(quality: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in sorted(quality.items()))


def provenance_markdown(prov: dict[str, Any]) -> list[str]:
    """The README's "Provenance" section (lines) from a run's ``provenance.json``: commit and dirty
    flag, source digest, constraints hash, per data set its content hash and counts, per model its
    weights hash and quality; ``[]`` for a run without the record."""
    if not prov:
        return []
    ib = prov.get("interpbench") or {}
    md = [
        "## Provenance",
        "",
        f"- commit: {_commit_text(ib.get('git'))}; interpbench {ib.get('version') or '?'}, "
        f"source digest `{(ib.get('source_digest') or '?')[:16]}`",
        f"- constraints: {_constraints_text(prov.get('constraints'))}",
        f"- seeds {prov.get('seeds', '?')}; {prov.get('chance_sets', '?')} random sets per chance level",
        "",
    ]
    datasets = [
        [name, f"`{d['hash'][:16]}`", d.get("hash_of", ""), f"{d['n_stimuli']:,}", len(d.get("label_counts") or {})]
        for name, d in sorted((prov.get("datasets") or {}).items())
    ]
    if datasets:
        md.append(_md_table(["dataset", "content hash", "of", "stimuli", "labels"], datasets))
    models = [
        [name, f"`{m['weights']}`" if m.get("weights") else "", _quality_text(m.get("quality") or {})]
        for name, m in sorted((prov.get("models") or {}).items())
    ]
    if models:
        md.append(_md_table(["model", "weights hash", "quality"], models))
    md += ["Hashes in full, counts per label, and per task the sample counts and a hash of the fit/probe split: "
           "`provenance.json`.", ""]  # fmt: skip
    return md


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    def esc(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_results_readme(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Fill ``out_dir`` (e.g. the committed ``results/``) from one run directory.

    Writes ``out_dir/leaderboards/*`` (Markdown, CSV, LaTeX), ``out_dir/plots/*`` (PNG, SVG),
    ``out_dir/environment.json`` and ``out_dir/README.md``: what was run, on what, with which
    versions, and the tables. Deterministic: the same run gives the same files.
    """
    from benchmark.leaderboard import add_dataset_notes, build_leaderboards, compute_leaderboards, render_markdown
    from benchmark.plots import build_plots
    from benchmark.results import outputs_fresh, read_tables, run_digest, stamp_outputs

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    path = out_dir / "README.md"
    digest = run_digest(run_dir, "publish")
    if outputs_fresh(out_dir, digest, ["README.md", "leaderboards/README.md"]):
        return path  # published from these very tables already
    scores, fits = read_tables(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp_outputs(out_dir, None)
    boards = add_dataset_notes(compute_leaderboards(scores, fits), _read_json(run_dir / "datasets.json"))
    build_leaderboards(scores, fits, out_dir / "leaderboards", digest=digest, boards=boards)
    plots = build_plots(scores, fits, out_dir / "plots", reuse=run_dir / "plots")  # the run drew them already
    info = describe_run(run_dir, fits)
    env = info["environment"]
    if env:
        (out_dir / "environment.json").write_text(json.dumps(env, indent=1, sort_keys=True) + "\n")
    if info["provenance"]:
        (out_dir / "provenance.json").write_text(json.dumps(info["provenance"], indent=1, sort_keys=True) + "\n")

    md = [
        f"# interpbench results: `{info['config_name']}`",
        "",
        "Generated from the results tables of run "
        f"`{info['run_id']}` by `benchmark.report.readme.write_results_readme`; do not edit by hand. "
        "Each metric cell is the median over directions with its 95% rerun interval (where a rerun with new seeds "
        "is expected to land; the direction bootstrap with one seed); the chance row "
        "gives the metric on random stimulus sets of the same size. See `leaderboards/` for CSV and LaTeX.",
        "",
        "Regenerate with `make benchmark` (= `interpbench run --config default`, then "
        "`interpbench publish results/runs/latest --out results`); what the columns mean: "
        "[docs/reading-the-leaderboard.md](../docs/reading-the-leaderboard.md).",
        "",
        *(
            ["What moved since the previous publication, and why: [CHANGES.md](CHANGES.md) (written by hand).", ""]
            if (out_dir / CHANGES).is_file()
            else []
        ),
        "## What was run",
        "",
        f"- config: `{info['config_name']}` ({info['config_source']}); seeds {info['seeds']}; "
        f"{info['chance_sets']} random sets per chance level",
        f"- methods: {', '.join(f'`{m}`' for m in info['methods']) or '(see tables)'}",
        f"- metrics: {', '.join(f'`{m}`' for m in info['metrics']) or '(see tables)'}",
        "",
        _md_table(
            ["model", "layer", "dataset", "dataset params", "fit samples", "probe samples", "stimulus hygiene"],
            [
                [t["model"], t["layer"], t["dataset"], t["dataset_params"], t["n_fit"], t["n_probe"], t["hygiene"]]
                for t in info["tasks"]
            ],
        ),
        "Stimulus hygiene: stimuli before -> after removing exact and near-duplicates, blank images and "
        "duplicate groups with conflicting labels (see the docs, \"Stimulus hygiene\").",
        "",
    ]
    if env:
        md += [
            "## Environment",
            "",
            f"Python {env.get('python', '?')} on {env.get('platform', '?')}; device `{env.get('device', '?')}`"
            + (f" ({env['gpu']})" if env.get("gpu") else "")
            + f"; {env.get('torch_threads', '?')} torch threads.",
            "",
            _md_table(["package", "version"], [[k, v] for k, v in sorted(env.get("packages", {}).items())]),
        ]
    md += provenance_markdown(info["provenance"])
    md += [render_markdown(boards.overall), render_markdown(boards.stability)]
    for table in boards.tasks:
        md.append(render_markdown(table))
        p = plots.get(table.slug)
        if p:
            md.append(
                f"![{table.title}: metrics against L0 and FVU](plots/{p['pareto'].name}.png)\n\n"
                f"![{table.title}: per-direction scores](plots/{p['scores'].name}.png)\n"
            )
    text = "\n".join(md)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    stamp_outputs(out_dir, digest)
    return path
