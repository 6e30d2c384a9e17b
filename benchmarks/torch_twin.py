"""gtmm's jitted Adam step against a PyTorch-eager twin of the same architecture, side by side.

The twin: the same encoder (two inception blocks of parallel 1/3/5/7 convolutions, group norm,
3x3 stride-2 convolutions, linear to 64), the same decoder (linear, 2x2 convolution + pixel
shuffle, inception block, 7x7 output convolution), the same prior and posterior maps (one tanh
layer of 256), the same memories (VRNN: LSTM 222; introspective: LSTM 316, attention MLP
128-128-softplus over a FIFO of latents, sigmoid gates from h_{t-1}), the same Bernoulli
likelihood and analytic KL. As public PyTorch code does, the recurrent part is a Python loop over
time; the encoder and decoder run once over all B*T frames (as gtmm does, and the faster way for
PyTorch too). Parameter counts of both are printed to show they match.

Part two: the PyPI `dnc` package's DNC (LSTM controller, one layer) against gtmm's DNC memory core
at equal configuration: one Adam step of the core alone, inputs [B, T, 32], loss = sum of squares
of the core's outputs.

    /path/to/venv-with-torch/bin/python benchmarks/torch_twin.py --steps 5 > out.json

PyTorch and `dnc` are benchmark-only dependencies (`pip install -e .[bench]`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from gtmm.model import ModelConfig, count_parameters, init_model
from gtmm.train import TrainConfig, make_optimizer, make_train_step

KERNELS = (1, 3, 5, 7)


class Inception(nn.Module):
    def __init__(self, cin, per_stream=8):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(cin, per_stream, k, padding=k // 2) for k in KERNELS)

    def forward(self, x):
        return torch.cat([c(x) for c in self.convs], 1)


class Encoder(nn.Module):
    def __init__(self, embed=64):
        super().__init__()
        self.block1, self.norm1 = Inception(1), nn.GroupNorm(4, 32)
        self.down1, self.norm1b = nn.Conv2d(32, 32, 3, 2, 1), nn.GroupNorm(4, 32)
        self.block2, self.norm2 = Inception(32), nn.GroupNorm(4, 32)
        self.down2 = nn.Conv2d(32, 64, 3, 2, 1)
        self.linear = nn.Linear(64 * 8 * 8, embed)

    def forward(self, x):
        x = 2 * x - 1
        x = F.relu(self.norm1(self.block1(x)))
        x = F.relu(self.norm1b(self.down1(x)))
        x = F.relu(self.norm2(self.block2(x)))
        return self.linear(self.down2(x).flatten(1))


class SubPixelUp(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, 4 * cout, 2)

    def forward(self, x):
        return F.pixel_shuffle(self.conv(F.pad(x, (0, 1, 0, 1))), 2)


class Decoder(nn.Module):
    def __init__(self, inputs):
        super().__init__()
        self.linear = nn.Linear(inputs, 64 * 8 * 8)
        self.up2, self.norm2 = SubPixelUp(64, 32), nn.GroupNorm(4, 32)
        self.block2, self.norm2b = Inception(32), nn.GroupNorm(4, 32)
        self.up1, self.norm1 = SubPixelUp(32, 32), nn.GroupNorm(4, 32)
        self.out = nn.Conv2d(32, 1, 7, padding=3)

    def forward(self, z):
        x = self.linear(z).view(-1, 64, 8, 8)
        x = F.relu(self.norm2(self.up2(x)))
        x = F.relu(self.norm2b(self.block2(x)))
        x = F.relu(self.norm1(self.up1(x)))
        return self.out(x)


def mlp(n_in, n_out, width, depth, act):
    layers, d = [], n_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), act()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, n_out))


class VRNN(nn.Module):
    def __init__(self, latent=32, embed=64, hidden=222, **_):
        super().__init__()
        self.lstm, self.hidden, self.context_size = nn.LSTMCell(embed + latent, hidden), hidden, hidden

    def initial_state(self, batch):
        zeros = torch.zeros(batch, self.hidden)
        return zeros, zeros

    def forward(self, z_prev, e_prev, state):
        h, c = self.lstm(torch.cat([e_prev, z_prev], -1), state)
        return h, (h, c)


class Introspective(nn.Module):
    def __init__(self, latent=32, hidden=316, slots=20, heads=5, **_):
        super().__init__()
        self.lstm = nn.LSTMCell(latent, hidden)
        self.attention = nn.Sequential(mlp(hidden, heads * slots, 128, 2, nn.ReLU), nn.Softplus())
        self.gate = nn.Linear(hidden, heads * latent)
        self.hidden, self.slots, self.heads, self.latent = hidden, slots, heads, latent
        self.context_size = heads * latent

    def initial_state(self, batch):
        zeros = torch.zeros(batch, self.hidden)
        return zeros, zeros, torch.zeros(batch, self.slots, self.latent), 0

    def forward(self, z_prev, e_prev, state):
        h_prev, c_prev, store, writes = state
        if writes > 0:  # FIFO write of z_{t-1} into slot (writes - 1) mod L
            slot = (writes - 1) % self.slots
            store = torch.cat([store[:, :slot], z_prev[:, None], store[:, slot + 1:]], 1)
        h, c = self.lstm(z_prev, (h_prev, c_prev))
        scores = self.attention(h).view(-1, self.heads, self.slots)
        mask = (torch.arange(self.slots) < min(writes, self.slots)).float()
        scores = scores * mask
        weights = scores / (scores.sum(-1, keepdim=True) + 1e-6)
        reads = weights @ store
        gates = torch.sigmoid(self.gate(h_prev)).view(-1, self.heads, self.latent)
        return (reads * gates).flatten(1), (h, c, store, writes + 1)


def gaussian(raw):
    mean, raw_std = raw.chunk(2, -1)
    return mean, F.softplus(raw_std) + 1e-3


class TorchGTMM(nn.Module):
    def __init__(self, model, T, latent=32, embed=64):
        super().__init__()
        self.memory = {"vrnn": VRNN, "introspective": Introspective}[model](latent=latent, embed=embed, slots=T)
        psi = self.memory.context_size
        self.encoder, self.decoder = Encoder(embed), Decoder(latent + psi)
        self.prior_map = mlp(psi, 2 * latent, 256, 1, nn.Tanh)
        self.posterior_map = mlp(psi + embed, 2 * latent, 256, 1, nn.Tanh)
        self.latent, self.embed = latent, embed

    def loss(self, frames):  # frames [B, T, 1, 32, 32]
        B, T = frames.shape[:2]
        emb = self.encoder(frames.flatten(0, 1)).view(B, T, -1)
        state = self.memory.initial_state(B)
        z, e = torch.zeros(B, self.latent), torch.zeros(B, self.embed)
        kls, psis, zs = [], [], []
        for t in range(T):  # the recurrent part, a Python loop over time
            psi, state = self.memory(z, e, state)
            pm, ps = gaussian(self.prior_map(psi))
            qm, qs = gaussian(self.posterior_map(torch.cat([emb[:, t], psi], -1)))
            z = qm + qs * torch.randn_like(qs)
            ratio = (qs / ps) ** 2
            kls.append(0.5 * (ratio + ((qm - pm) / ps) ** 2 - 1 - torch.log(ratio)).sum(-1))
            psis.append(psi), zs.append(z)
            e = emb[:, t]
        logits = self.decoder(torch.cat([torch.stack(zs, 1), torch.stack(psis, 1)], -1).flatten(0, 1))
        target = frames.flatten(0, 1)
        log_lik = (target * logits - F.softplus(logits)).flatten(1).sum(-1).view(B, T)
        return -(log_lik - torch.stack(kls, 1)).sum(1).mean()


def _threads(fn, n):
    """`fn` run with PyTorch on `n` intra-op threads: on a loaded 2-core machine one thread was
    several times faster than two (OpenMP workers contending), so both are timed and the faster
    one is the baseline."""
    def run():
        torch.set_num_threads(n)
        fn()
    return run


def _torch_variants(fn, device: str) -> dict:
    if device != "cpu":  # one variant: the GPU, each step waited for as gtmm's is
        def synced():
            fn()
            torch.cuda.synchronize()
        return {f"torch_{device}": synced}
    cpus = len(os.sched_getaffinity(0))
    return {f"torch_{n}t": _threads(fn, n) for n in sorted({1, cpus})}


def _median_side_by_side(fns: dict, steps: int) -> dict:
    for fn in fns.values():
        fn()  # first call: compile (gtmm) / allocator warm-up (torch)
    times = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_model(name: str, B: int, T: int, steps: int, device: str = "cpu") -> dict:
    torch.manual_seed(0)
    twin = TorchGTMM(name, T).to(device)
    opt = torch.optim.Adam(twin.parameters(), lr=1e-4)
    frames_np = (np.random.default_rng(0).random((B, T, 1, 32, 32)) > 0.7).astype(np.float32)
    frames_t = torch.from_numpy(frames_np).to(device)

    def torch_step():
        opt.zero_grad(set_to_none=True)
        twin.loss(frames_t).backward()
        opt.step()

    model = init_model(ModelConfig(name, T), 0)
    optimizer = make_optimizer(TrainConfig(model=name))
    state = {"model": model, "opt": optimizer.init(eqx.filter(model, eqx.is_array))}
    train_step = make_train_step(optimizer)
    frames_j, context = jnp.asarray(frames_np), jnp.zeros((B, T, 0))
    key = jax.random.PRNGKey(0)

    def gtmm_step():
        out = jax.block_until_ready(train_step(state["model"], state["opt"], frames_j, context, key))
        state["model"], state["opt"] = out[0], out[1]

    start = time.perf_counter()
    gtmm_step()
    first = time.perf_counter() - start
    med = _median_side_by_side({"gtmm": gtmm_step, **_torch_variants(torch_step, device)}, steps)
    best = min(v for k, v in med.items() if k.startswith("torch"))
    return {"model": name, "batch": B, "T": T, "gtmm_step_s": round(med["gtmm"], 4),
            **{f"{k}_step_s": round(v, 4) for k, v in med.items() if k.startswith("torch")},
            "best_torch_over_gtmm": round(best / med["gtmm"], 2),
            "gtmm_first_step_s": round(first, 1), "gtmm_params": count_parameters(model),
            "torch_params": sum(p.numel() for p in twin.parameters())}


def bench_dnc(slots: int, B: int, T: int, steps: int, hidden: int = 256, heads: int = 5, word: int = 32,
              inputs: int = 32, device: str = "cpu") -> dict:
    from dnc import DNC

    torch.manual_seed(0)
    ref = DNC(input_size=inputs, hidden_size=hidden, rnn_type="lstm", num_layers=1, num_hidden_layers=1,
              nr_cells=slots, read_heads=heads, cell_size=word, batch_first=True,
              gpu_id=-1 if device == "cpu" else torch.device(device).index or 0)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-4)
    x_np = np.random.default_rng(0).standard_normal((B, T, inputs)).astype(np.float32)
    x_t = torch.from_numpy(x_np).to(device)

    def torch_step():
        opt.zero_grad(set_to_none=True)
        out, _ = ref(x_t, (None, None, None), reset_experience=True, pass_through_memory=True)
        (out ** 2).sum().backward()
        opt.step()

    from dnc_core_grad import core_loss as loss, make_core  # benchmarks/, beside this script

    core = make_core(slots, hidden, heads, word, inputs)
    optimizer = make_optimizer(TrainConfig(model="dnc"))

    @eqx.filter_jit
    def jax_step(core, opt_state, x):
        grads = eqx.filter_grad(loss)(core, x)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(core, eqx.is_array))
        return eqx.apply_updates(core, updates), opt_state

    state = {"core": core, "opt": optimizer.init(eqx.filter(core, eqx.is_array))}
    x_j = jnp.asarray(x_np)

    def gtmm_step():
        state["core"], state["opt"] = jax.block_until_ready(jax_step(state["core"], state["opt"], x_j))

    med = _median_side_by_side({"gtmm": gtmm_step, **_torch_variants(torch_step, device)}, steps)
    best = min(v for k, v in med.items() if k.startswith("torch"))
    return {"dnc_slots": slots, "word": word, "read_heads": heads, "controller": hidden, "batch": B, "T": T,
            "gtmm_step_s": round(med["gtmm"], 4),
            **{f"dnc_{k}_step_s": round(v, 4) for k, v in med.items() if k.startswith("torch")},
            "best_dnc_over_gtmm": round(best / med["gtmm"], 2), "gtmm_params": count_parameters(core),
            "dnc_params": sum(p.numel() for p in ref.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--models", default="vrnn,introspective")
    parser.add_argument("--skip-dnc", action="store_true")
    parser.add_argument("--device", default="cpu",
                        help="PyTorch's device: cpu (timed on 1 and on all cores) or cuda; gtmm runs on JAX's"
                             " default device, so on a GPU machine both sides are on the GPU")
    args = parser.parse_args()
    load_start = [round(x, 2) for x in os.getloadavg()]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        rev = None
    records = [bench_model(m, 10, 20, args.steps, args.device) for m in args.models.split(",") if m]
    if not args.skip_dnc:
        records += [bench_dnc(slots, 10, 25, args.steps, device=args.device) for slots in (25, 125)]
    print(json.dumps({"git": rev, "torch": torch.__version__, "jax": jax.__version__,
                      "torch_device": args.device, "jax_device": str(jax.devices()[0].device_kind),
                      "loadavg_start": load_start, "cpus": len(os.sched_getaffinity(0)),
                      "machine": platform.processor() or platform.machine(),
                      "loadavg_end": [round(x, 2) for x in os.getloadavg()], "records": records}, indent=1))


if __name__ == "__main__":
    main()
