"""The static HTML report of a run (:func:`benchmark.report.build.build_report`) and the
per-cell galleries the runner saves for it (:mod:`benchmark.report.gallery`)."""


def build_report(run_dir, out_dir=None):
    """See :func:`benchmark.report.build.build_report`."""
    from benchmark.report.build import build_report as build

    return build(run_dir, out_dir)
