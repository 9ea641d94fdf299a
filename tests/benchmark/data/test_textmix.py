"""textmix: sources from this machine, labelled; file-disjoint splits; cached; a manifest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark.cache import Cache, using_cache
from benchmark.data.text_files import file_split
from benchmark.data.textmix import SOURCES, TextMix
from benchmark.errors import UserError


@pytest.fixture
def cache(tmp_path: Path):
    with using_cache(Cache(tmp_path / "cache")) as c:
        yield c


def test_small_corpus_has_every_source_with_a_manifest(cache: Cache) -> None:
    docs = TextMix(size_mb=0.12, split="all")
    man = docs.manifest()
    present = [s for s in SOURCES if s not in man["missing_sources"]]
    assert "python" in present and "html" in present  # always there with Python itself
    assert docs.label_names == present
    assert sum(v["documents"] for v in man["sources"].values()) == len(docs)
    assert all(man["sources"][s]["documents"] > 0 for s in present)
    assert man["content_hash"] == docs.identity()["content"]
    texts = docs.texts(np.arange(len(docs)))
    labels = [docs.label_names[i] for i in docs.labels(np.arange(len(docs)))]
    assert all(len(t) <= 1024 for t in texts)
    by_label = {name: [t for t, lab in zip(texts, labels) if lab == name] for name in present}
    assert any("<" in t and "</" in t for t in by_label["html"])
    if "base64" in by_label:
        import re

        assert all(re.fullmatch(r"[A-Za-z0-9+/=\n]+", t) for t in by_label["base64"])


@pytest.mark.slow
def test_cached_and_deterministic(tmp_path: Path) -> None:
    with using_cache(Cache(tmp_path / "a")) as c:
        first = TextMix(size_mb=0.06, split="all")
        again = TextMix(size_mb=0.06, split="all")
        assert [r.computed for r in c.records if r.stage == "corpus"] == [True, False]
    # built again in another process (other object addresses, other string hash seed)
    code = (
        "from pathlib import Path; from benchmark.cache import Cache, using_cache; "
        "from benchmark.data.textmix import TextMix\n"
        f"with using_cache(Cache(Path({str(tmp_path / 'b')!r}))):\n"
        "    print(TextMix(size_mb=0.06, split='all').content_hash)"
    )
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert first.content_hash == again.content_hash == fresh
    with using_cache(Cache(tmp_path / "a")):
        other_seed = TextMix(size_mb=0.06, split="all", seed=1)
    assert other_seed.content_hash != first.content_hash


@pytest.mark.slow
def test_train_and_eval_splits_share_no_file(cache: Cache) -> None:
    train = TextMix(size_mb=0.12, split="train")
    evals = TextMix(size_mb=0.12, split="eval")
    both = TextMix(size_mb=0.12, split="all")
    tr, ev = set(train.origins(np.arange(len(train)))), set(evals.origins(np.arange(len(evals))))
    assert tr and ev and not tr & ev
    assert len(train) + len(evals) == len(both)
    assert all(file_split(o, 0.7) == "eval" for o in ev)
    # a larger corpus keeps every file on the same side
    bigger = TextMix(size_mb=0.2, split="train")
    assert not set(bigger.origins(np.arange(len(bigger)))) & ev


def test_language_labels_for_translations(cache: Cache) -> None:
    docs = TextMix(size_mb=0.06, split="all", sources=("translation", "python"), translation_labels="language")
    if "translation" in docs.manifest()["missing_sources"]:
        pytest.skip("no gettext catalogs under /usr/share/locale on this machine")
    assert any(name.startswith("translation:") for name in docs.label_names)


def test_bad_parameters(cache: Cache) -> None:
    with pytest.raises(UserError, match="unknown source 'pdf'"):
        TextMix(sources=("python", "pdf"))
    with pytest.raises(UserError, match="unknown split"):
        TextMix(split="test")
    with pytest.raises(UserError, match="translation_labels"):
        TextMix(translation_labels="script")
    with pytest.raises(UserError, match="size_mb > 0"):
        TextMix(size_mb=0)


def test_pydoc_pages_hold_no_object_addresses() -> None:
    from benchmark.data.textmix import pydoc_html

    page = pydoc_html("sched")  # its default arguments are sentinels: <object object at 0x...>
    assert page is not None and "object object at 0x...&gt;" in page
    import re

    assert not re.search(r"0x[0-9a-f]{6,}", page)
