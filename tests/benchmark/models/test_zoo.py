"""torchvision / timm / open_clip adapters, at random initialisation (no weights are downloaded)."""

import numpy as np
import pytest
import torch

from benchmark.config import TaskSpec
from benchmark.errors import UserError
from benchmark.models.zoo import TorchvisionModel, load_state_file, probe_layers
from benchmark.runner import build_model


class Images:
    def __init__(self, n, size):
        self.x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))

    def images(self, idx):
        return self.x[idx]


def test_torchvision_through_the_runner_name():
    model = build_model(
        TaskSpec(
            model="torchvision:resnet18",
            layers=("layer2",),
            dataset="shapes",
            model_params={"weights": "none", "input_size": 64},
        )
    )
    assert isinstance(model, TorchvisionModel) and model.name == "torchvision:resnet18"
    layers = model.layers()
    assert {"conv1", "layer1.0", "layer2", "layer4", "fc"} <= set(layers)
    assert "layer1.0.relu" not in layers  # a ReLU reused inside the block: ambiguous, left out
    out = torch.cat(list(model.activations(Images(5, 40), np.arange(5), "layer2", batch_size=2, device="cpu")))
    assert out.shape == (5, 128)
    # spatial mean of the hooked map, computed by hand
    net = model.net
    x = model.preprocess(Images(5, 40).x)
    h = net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))))
    assert torch.allclose(out, h.mean(dim=(2, 3)), atol=1e-5)


def test_missing_weights_say_where_they_were_looked_for(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match="not in the local cache.*weights='none'"):
        TorchvisionModel(name="resnet18")
    with pytest.raises(UserError, match="has no model 'resnet1'"):
        TorchvisionModel(name="resnet1")


def test_weights_from_a_file_and_wrong_shapes(tmp_path):
    a = TorchvisionModel(name="resnet18", weights="none", input_size=32)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in a.net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    b = TorchvisionModel(name="resnet18", weights=str(tmp_path / "w.safetensors"), input_size=32)
    assert b.identity()["weights"] == a.identity()["weights"]
    bad = dict(a.net.state_dict())
    bad["fc.weight"] = torch.zeros(3, 512)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="size mismatch"):
        load_state_file(a.net, tmp_path / "bad.pth", "torchvision:resnet18")


def test_probe_layers_skips_shared_modules_and_tuples():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.act = torch.nn.Linear(4, 4), torch.nn.Linear(4, 2), torch.nn.ReLU()

        def forward(self, x):
            return self.b(self.act(self.a(self.act(x))))

    assert probe_layers(Net(), torch.zeros(1, 4)) == ["a", "b"]


def test_timm_random_init():
    pytest.importorskip("timm", reason="timm not installed")
    model = build_model(
        TaskSpec(
            model="timm:resnet18",
            layers=("layer3",),
            dataset="shapes",
            model_params={"weights": "none", "input_size": 32},
        )
    )
    out = torch.cat(list(model.activations(Images(3, 32), np.arange(3), "layer3", batch_size=8, device="cpu")))
    assert out.shape == (3, 256) and torch.isfinite(out).all()
    with pytest.raises(UserError, match="timm has no model"):
        build_model(TaskSpec(model="timm:not_a_model_xyz", layers=("x",), dataset="shapes"))


@pytest.mark.slow
def test_open_clip_random_init_is_not_a_classifier():
    pytest.importorskip("open_clip", reason="open_clip_torch not installed")
    from benchmark.models.zoo import OpenClipModel

    model = OpenClipModel(name="RN50", weights="none")
    assert model.input_size == 224 and "layer4" in model.layers()
    out = torch.cat(list(model.activations(Images(2, 224), np.arange(2), "layer4", batch_size=2, device="cpu")))
    assert out.shape == (2, 2048)
    assert model.fidelity(None, "layer4", Images(2, 224), np.arange(2), device="cpu") == {}
