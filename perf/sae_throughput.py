"""SAE training throughput (tokens/s: forward + backward + optimizer step) against peers.

Setting: d_in 512, width 4,096, TopK k 32, batch 4,096 tokens, float32 on the CPU (or
``--device cuda``). Contenders, each timed on the same random batches in this run:

* ours ``sae_topk``: one dense matmul (the encoder); the decoder is an embedding bag over the
  k active rows and the weight gradients are sparse products over the active entries;
* ours ``sae_l1``: ReLU SAE with a hand-written backward (five dense matmuls, no input gradient);
* a plain PyTorch dense TopK SAE (autograd, scatter into a dense code matrix);
* the ``overcomplete`` package's ``TopKSAE`` with its ``top_k_auxiliary_loss`` and the steps of
  its ``train_sae`` loop (grad clipping included);
* SAELens's ``TopKTrainingSAE.training_forward_pass`` + Adam.

A peer that is not installed is reported as such and skipped.

    OMP_NUM_THREADS=2 .venv/bin/python perf/sae_throughput.py
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from methods.sae import L1SAE, TopKSAE  # noqa: E402

D_IN, WIDTH, K, BATCH = 512, 4096, 32, 4096


def init_params(device) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    w_dec = torch.nn.functional.normalize(torch.randn(WIDTH, D_IN, generator=gen), dim=1)
    params = {"W_enc": w_dec.clone(), "b_enc": torch.zeros(WIDTH), "W_dec": w_dec, "b_dec": torch.zeros(D_IN)}
    return {n: p.to(device).requires_grad_(True) for n, p in params.items()}


def ours_topk(device) -> Callable[[torch.Tensor], None]:
    method = TopKSAE(n_latents=WIDTH, k=K)
    params = init_params(device)
    opt = torch.optim.Adam(list(params.values()), lr=4e-4)
    no_dead = torch.zeros(WIDTH, dtype=torch.bool, device=device)

    def step(x):
        method._step(x, params, no_dead, D_IN // 2, device)
        method._finish_step(opt, params["W_dec"])

    return step


def ours_l1(device) -> Callable[[torch.Tensor], None]:
    method = L1SAE(n_latents=WIDTH)
    params = init_params(device)
    opt = torch.optim.Adam(list(params.values()), lr=4e-4)

    def step(x):
        method._step(x, params, device)
        method._finish_step(opt, params["W_dec"])

    return step


def dense_topk(device) -> Callable[[torch.Tensor], None]:
    params = init_params(device)
    opt = torch.optim.Adam(list(params.values()), lr=4e-4)

    def step(x):
        pre = (x - params["b_dec"]) @ params["W_enc"].T + params["b_enc"]
        vals, idx = pre.topk(K, dim=1)
        codes = torch.zeros_like(pre).scatter(1, idx, torch.relu(vals))
        loss = ((codes @ params["W_dec"] + params["b_dec"] - x) ** 2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            params["W_dec"].div_(params["W_dec"].norm(dim=1, keepdim=True))

    return step


def overcomplete_topk(device) -> Callable[[torch.Tensor], None]:
    import matplotlib
    import matplotlib.cm

    if not hasattr(matplotlib.cm, "get_cmap"):  # overcomplete 0.3 imports it; matplotlib >= 3.9 removed it
        matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap
    from overcomplete.sae import TopKSAE as OvercompleteTopK
    from overcomplete.sae.losses import top_k_auxiliary_loss

    model = OvercompleteTopK(D_IN, WIDTH, top_k=K, device=str(device))
    opt = torch.optim.Adam(model.parameters(), lr=4e-4)

    def step(x):
        opt.zero_grad()
        z_pre, z, x_hat = model(x)
        loss = top_k_auxiliary_loss(x, x_hat, z_pre, z, model.get_dictionary())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def saelens_topk(device) -> Callable[[torch.Tensor], None]:
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=WIDTH, k=K, device=str(device), dtype="float32"))
    opt = torch.optim.Adam(sae.parameters(), lr=4e-4)
    no_dead = torch.zeros(WIDTH, dtype=torch.bool, device=device)
    counter = [0]

    def step(x):
        opt.zero_grad()
        out = sae.training_forward_pass(
            TrainStepInput(
                sae_in=x, coefficients={}, dead_neuron_mask=no_dead, n_training_steps=counter[0], is_logging_step=False
            )
        )
        out.loss.backward()
        opt.step()
        counter[0] += 1

    return step


CONTENDERS = {
    "ours sae_topk": ours_topk,
    "ours sae_l1": ours_l1,
    "plain PyTorch dense TopK": dense_topk,
    "overcomplete TopKSAE": overcomplete_topk,
    "SAELens TopKTrainingSAE": saelens_topk,
}


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved_tokens_per_second(steps: dict[str, Callable], batches: list[torch.Tensor], warmup: int, device):
    """Tokens/s per contender. Steps are interleaved (one step of each contender per round), so
    a load that drifts on a shared machine affects every contender alike."""
    for step in steps.values():
        for x in batches[:warmup]:
            step(x)
    seconds = dict.fromkeys(steps, 0.0)
    for x in batches[warmup:]:
        for name, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            step(x)
            _sync(device)
            seconds[name] += time.perf_counter() - start
    return {name: BATCH * (len(batches) - warmup) / s for name, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="*", help="names (substrings) of contenders to run")
    args = parser.parse_args()
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(BATCH, D_IN, generator=gen).to(device) for _ in range(args.warmup + args.steps)]
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(f"d_in {D_IN}, width {WIDTH}, k {K}, batch {BATCH}, device {device}{gpu}, torch threads {torch.get_num_threads()}")
    steps: dict[str, Callable] = {}
    for name, make in CONTENDERS.items():
        if args.only and not any(s.lower() in name.lower() for s in args.only):
            continue
        try:
            steps[name] = make(device)
        except ImportError as err:
            print(f"{name:28s} not installed ({err.name or err}); skipped")
    results = interleaved_tokens_per_second(steps, batches, args.warmup, device)
    for name, value in results.items():
        print(f"{name:28s} {value:10,.0f} tokens/s")
    for ours in ("ours sae_topk", "ours sae_l1"):
        if ours not in results:
            continue
        ratios = ", ".join(f"{results[ours] / v:.2f}x {n}" for n, v in results.items() if not n.startswith("ours"))
        print(f"{ours}: {ratios}")


if __name__ == "__main__":
    main()
