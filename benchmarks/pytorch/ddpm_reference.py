#!/usr/bin/env python3
"""PyTorch reference for benchmarks/Microsoft.ML.Diffusion.Benchmarks.

The same UNet as src/Microsoft.ML.Diffusion/Networks (layer for layer: sinusoidal time embedding -> MLP,
residual blocks with GroupNorm(8) / SiLU / 3x3 convs and a per-channel time projection, single-head
self-attention at the listed resolutions, strided-conv downsampling, nearest + conv upsampling,
zero-initialised output conv stored at its natural shape that computes max(C, 16) channels and keeps the
first C, like Networks/OutputProjection.cs), so the parameter counts are equal; the same training step as
DiffusionTrainer.TrainStep (random t, q_sample, MSE on eps, AdamW lr 2e-4, clip 1.0, EMA 0.999, loss
kept on the device); and the samplers' per-step work (one UNet forward + a few elementwise ops, per-sample
seeded noise for DDPM) under torch.inference_mode.

Run with Debian 12's python3-torch (1.13.1): OPENBLAS_NUM_THREADS=1 /usr/bin/python3 ddpm_reference.py [--quick] [--out DIR]
Writes DIR/pytorch.json with the same fields as the C# benchmark's torchsharp.json.
"""
import argparse
import datetime
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    "bench": dict(description="1x28x28, base 32, mult [1,2,2], attn @7",
                  net=dict(image_channels=1, image_size=28, base_channels=32, channel_multipliers=[1, 2, 2],
                           residual_blocks_per_level=1, attention_resolutions=[7], attention_heads=1, norm_groups=8),
                  batch=64),
    "rgb32": dict(description="3x32x32, base 64, mult [1,2,2], attn @8",
                  net=dict(image_channels=3, image_size=32, base_channels=64, channel_multipliers=[1, 2, 2],
                           residual_blocks_per_level=1, attention_resolutions=[8], attention_heads=1, norm_groups=8),
                  batch=64),
}
MIN_OUTPUT_CHANNELS = 16  # Networks/OutputProjection.cs: the output conv computes at least 16 channels


# ----------------------------------------------------------------------------- network

class SinusoidalTimestepEmbedding(nn.Module):
    def __init__(self, dim):
        super().__init__()
        half = dim // 2
        self.register_buffer("frequencies", torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10000.0) / half)),
                             persistent=False)

    def forward(self, t):
        args = t.float().unsqueeze(1) * self.frequencies.unsqueeze(0)
        return torch.cat([args.sin(), args.cos()], 1)


class ResidualBlock(nn.Module):
    def __init__(self, cin, cout, emb_dim, groups, dropout=0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_projection = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_projection(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    def __init__(self, channels, heads, groups):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.projection = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        d = c // self.heads
        q, k, v = self.qkv(self.norm(x)).view(n, 3, self.heads, d, h * w).permute(1, 0, 2, 4, 3).unbind(0)
        # torch 1.13 has no F.scaled_dot_product_attention: the math path it falls back to on the CPU.
        attn = torch.softmax(q @ k.transpose(-2, -1) * (1.0 / math.sqrt(d)), dim=-1)
        merged = (attn @ v).permute(0, 1, 3, 2).reshape(n, c, h, w)
        return x + self.projection(merged)


class UNetBlock(nn.Module):
    def __init__(self, cin, cout, emb_dim, o, with_attention):
        super().__init__()
        self.residual = ResidualBlock(cin, cout, emb_dim, o["norm_groups"])
        self.attention = SelfAttention(cout, o["attention_heads"], o["norm_groups"]) if with_attention else nn.Identity()

    def forward(self, x, emb):
        return self.attention(self.residual(x, emb))


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class OutputProjection(nn.Module):
    """Networks/OutputProjection.cs: weights of the natural shape (C, cin, 3, 3), zero filters appended at run time so
    the convolution computes max(C, 16) channels, the first C kept."""

    def __init__(self, cin, channels):
        super().__init__()
        # A throw-away layer of the computed width draws from the global generator as the library's does, so every
        # other layer gets the weights it always had.
        nn.Conv2d(cin, max(channels, MIN_OUTPUT_CHANNELS), 3, padding=1)
        self.weight = nn.Parameter(torch.zeros(channels, cin, 3, 3))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        channels = self.weight.shape[0]
        padding = MIN_OUTPUT_CHANNELS - channels
        w = F.pad(self.weight, (0, 0, 0, 0, 0, 0, 0, padding)) if padding > 0 else self.weight
        b = F.pad(self.bias, (0, padding)) if padding > 0 else self.bias
        y = F.conv2d(x, w, b, padding=1)
        return y.narrow(1, 0, channels) if padding > 0 else y


class UNetNoisePredictor(nn.Module):
    def __init__(self, o):
        super().__init__()
        self.o = o
        base = o["base_channels"]
        channels = [base * m for m in o["channel_multipliers"]]
        levels = len(channels)
        emb_dim = base * 4
        attention_at = set(o["attention_resolutions"])
        self.time_embedding = nn.Sequential(SinusoidalTimestepEmbedding(base), nn.Linear(base, emb_dim), nn.SiLU(),
                                            nn.Linear(emb_dim, emb_dim))
        self.input_conv = nn.Conv2d(o["image_channels"], base, 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        skips = [base]
        current = base
        for level in range(levels):
            res = o["image_size"] >> level
            for _ in range(o["residual_blocks_per_level"]):
                self.down_blocks.append(UNetBlock(current, channels[level], emb_dim, o, res in attention_at))
                current = channels[level]
                skips.append(current)
            if level < levels - 1:
                self.downsamplers.append(Downsample(current))
                skips.append(current)
        self.middle_block1 = UNetBlock(current, current, emb_dim, o, True)
        self.middle_block2 = ResidualBlock(current, current, emb_dim, o["norm_groups"])
        self.up_blocks = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for level in reversed(range(levels)):
            res = o["image_size"] >> level
            for _ in range(o["residual_blocks_per_level"] + 1):
                self.up_blocks.append(UNetBlock(current + skips.pop(), channels[level], emb_dim, o, res in attention_at))
                current = channels[level]
            if level > 0:
                self.upsamplers.append(Upsample(current))
        self.output_norm = nn.GroupNorm(o["norm_groups"], current)
        self.output_conv = OutputProjection(current, o["image_channels"])

    def forward(self, x, t):
        levels = len(self.o["channel_multipliers"])
        per_level = self.o["residual_blocks_per_level"]
        emb = F.silu(self.time_embedding(t))
        h = self.input_conv(x)
        skips = [h]
        block = 0
        for level in range(levels):
            for _ in range(per_level):
                h = self.down_blocks[block](h, emb)
                block += 1
                skips.append(h)
            if level < levels - 1:
                h = self.downsamplers[level](h)
                skips.append(h)
        h = self.middle_block2(self.middle_block1(h, emb), emb)
        block = 0
        up = 0
        for level in reversed(range(levels)):
            for _ in range(per_level + 1):
                h = self.up_blocks[block](torch.cat([h, skips.pop()], 1), emb)
                block += 1
            if level > 0:
                h = self.upsamplers[up](h)
                up += 1
        return self.output_conv(F.silu(self.output_norm(h)))


PROBE_TIMESTEPS = (17, 600)
PROBE_MODULUS = 2147483647


def probe_values(n, offset=0):
    """n numbers in [-1, 1): an integer hash of the index (exact in int64, so NetworkProbe.cs gets the same ones)."""
    i = torch.arange(offset, offset + n, dtype=torch.int64)
    h = ((i * i) % PROBE_MODULUS * 48271 + i * 16807 + 12345) % PROBE_MODULUS
    return h.double() / PROBE_MODULUS * 2 - 1


def network_probe(o):
    """What the network computes, for benchmarks/lockstep.py to compare with the library's side (NetworkProbe.cs in
    the benchmarks project): a fresh network whose every parameter is set by a rule of its shape alone (hash values
    u of the flat index; u * sqrt(3 / fan-in) for weights, 1 + 0.2 u for vectors), one forward of a fixed input
    at fixed timesteps, and two statistics of the output: mean |y| and the mean of y times fixed values. They agree
    to float rounding only if the two networks are the same function: moving the attention to another
    resolution changes them by 5-15 %, GroupNorm(4) for GroupNorm(8) by 8 %, bilinear for nearest upsampling
    by 0.6 %."""
    net = UNetNoisePredictor(o)
    net.eval()
    with torch.no_grad():
        for p in net.parameters():
            u = probe_values(p.numel())
            v = u * math.sqrt(3.0 / (p.numel() // p.shape[0])) if p.dim() >= 2 else u * 0.2 + 1.0
            p.copy_(v.float().view(p.shape))
        shape = (len(PROBE_TIMESTEPS), o["image_channels"], o["image_size"], o["image_size"])
        x = probe_values(math.prod(shape), offset=7).float().view(shape)
        y = net(x, torch.tensor(PROBE_TIMESTEPS, dtype=torch.int64)).double().flatten()
        return y.abs().mean().item(), (y * probe_values(y.numel(), offset=3)).mean().item()


# ----------------------------------------------------------------------------- schedule, training, sampling

T = 1000
BETAS = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
ALPHAS_CUMPROD = torch.cumprod(1.0 - BETAS, 0)
SQRT_AC = ALPHAS_CUMPROD.sqrt().float()
SQRT_1M_AC = (1.0 - ALPHAS_CUMPROD).sqrt().float()
AC = ALPHAS_CUMPROD.tolist()


def ac_at(t):
    return AC[t] if t >= 0 else 1.0


class Trainer:
    """DiffusionTrainer.TrainStep: same order of work, same optimizer settings."""

    def __init__(self, o, batch, seed=1, lr=2e-4, warmup=100, clip=1.0, ema_decay=0.999):
        torch.manual_seed(seed)
        self.network = UNetNoisePredictor(o)
        self.ema_network = UNetNoisePredictor(o)
        self.ema_network.eval()
        for p in self.ema_network.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            for a, s in zip(self.ema_network.parameters(), self.network.parameters()):
                a.copy_(s)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=lr, weight_decay=0.0)
        self.lr, self.warmup, self.clip, self.ema_decay = lr, warmup, clip, ema_decay
        self.generator = torch.Generator().manual_seed(seed)
        self.loss_sum = torch.zeros(1)
        self.loss_count = 0
        self.steps = 0

    def current_lr(self):
        return self.lr if self.warmup == 0 else self.lr * min(1.0, (self.steps + 1.0) / self.warmup)

    def ema_update(self):
        d = min(self.ema_decay, (1.0 + self.steps) / (10.0 + self.steps))
        with torch.no_grad():
            for a, s in zip(self.ema_network.parameters(), self.network.parameters()):
                a.mul_(d).add_(s, alpha=1.0 - d)

    def data(self, x0):
        n = x0.shape[0]
        t = torch.randint(0, T, (n,), dtype=torch.int64, generator=self.generator)
        noise = torch.randn(x0.shape, dtype=torch.float32, generator=self.generator)
        xt = SQRT_AC.index_select(0, t).view(-1, 1, 1, 1) * x0 + SQRT_1M_AC.index_select(0, t).view(-1, 1, 1, 1) * noise
        return xt, t, noise

    def train_step(self, x0, timings=None):
        clock = [time.perf_counter()]
        self.network.train()
        xt, t, noise = self.data(x0)
        clock.append(time.perf_counter())
        for g in self.optimizer.param_groups:
            g["lr"] = self.current_lr()
        self.optimizer.zero_grad()
        loss = F.mse_loss(self.network(xt, t), noise)
        clock.append(time.perf_counter())
        loss.backward()
        clock.append(time.perf_counter())
        norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.clip)
        if not math.isfinite(float(norm)):
            raise RuntimeError("training diverged")
        clock.append(time.perf_counter())
        self.optimizer.step()
        clock.append(time.perf_counter())
        self.steps += 1
        self.ema_update()
        with torch.no_grad():
            self.loss_sum.add_(loss.detach())
        self.loss_count += 1
        clock.append(time.perf_counter())
        del xt, t, noise, loss
        clock.append(time.perf_counter())
        if timings is not None:
            for i, key in enumerate(["data", "forward", "backward", "clip", "optimizer", "ema", "other"]):
                timings.setdefault(key, []).append(clock[i + 1] - clock[i])
            timings.setdefault("total", []).append(clock[-1] - clock[0])

    def take_mean_loss(self):
        m = self.loss_sum.item() / max(self.loss_count, 1)
        self.loss_sum.zero_()
        self.loss_count = 0
        return m


def per_sample_noise(generators, shape):
    return torch.cat([torch.randn((1,) + tuple(shape[1:]), generator=g) for g in generators], 0)


def decompose(eps_hat, x, t):
    """x0 from eps (clipped to [-1, 1]) and eps recomputed from the clipped x0 (X0Clipping.Clip)."""
    a, s = math.sqrt(AC[t]), math.sqrt(1.0 - AC[t])
    x0 = ((x - s * eps_hat) / a).clamp(-1.0, 1.0)
    return x0, (x - a * x0) / s


def ddim_timesteps(n):
    ratio = T // n
    return [i * ratio for i in range(n)][::-1]


def dpm_timesteps(n):
    # log-SNR spacing from T-1 to 0, like DpmSolverPlusPlusSampler.ChooseTimesteps (rounded, made strictly decreasing).
    lam = [0.5 * math.log(a) - 0.5 * math.log(1 - a) for a in AC]
    out, t = [], T - 1
    for i in range(n):
        target = lam[T - 1] + (lam[0] - lam[T - 1]) * i / max(n - 1, 1)
        while t > 0 and lam[t - 1] <= target:
            t -= 1
        prev = out[-1] if out else 10 ** 9
        t = max(min(t, prev - 1), n - 1 - i)
        out.append(t)
    return out


def sample(network, kind, steps, seeds, shape, stop_after=None):
    """The sampling loop; returns (seconds, steps run). stop_after times only the first steps."""
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    x = per_sample_noise(gens, (len(seeds),) + tuple(shape))
    ts = list(range(T))[::-1] if kind == "ddpm" else ddim_timesteps(steps) if kind == "ddim" else dpm_timesteps(steps)
    lam = lambda t: 0.5 * math.log(AC[t]) - 0.5 * math.log(1 - AC[t])
    prev_x0, prev_lam = None, 0.0
    start = time.perf_counter()
    done = 0
    with torch.inference_mode():
        for i, t in enumerate(ts):
            if stop_after is not None and done >= stop_after:
                break
            eps = network(x, torch.full((x.shape[0],), t, dtype=torch.int64))
            nxt = ts[i + 1] if i + 1 < len(ts) else -1
            x0, eps_c = decompose(eps, x, t)
            if kind == "ddim":
                x = math.sqrt(ac_at(nxt)) * x0 + math.sqrt(max(1.0 - ac_at(nxt), 0.0)) * eps_c
            elif kind == "ddpm":
                beta = 1.0 - AC[t] / ac_at(nxt)
                om = 1.0 - AC[t]
                mean = (math.sqrt(ac_at(nxt)) * beta / om) * x0 + (math.sqrt(1 - beta) * (1 - ac_at(nxt)) / om) * x
                if t > 0:
                    z = per_sample_noise(gens, x.shape)
                    mean = mean + math.sqrt(max((1 - ac_at(nxt)) / om * beta, 1e-20)) * z
                x = mean
            else:  # DPM-Solver++(2M)
                ls = lam(t)
                if nxt < 0:
                    res = x0
                else:
                    at, st, ss = math.sqrt(AC[nxt]), math.sqrt(1 - AC[nxt]), math.sqrt(1 - AC[t])
                    h = lam(nxt) - ls
                    phi = math.exp(-h) - 1.0
                    res = (st / ss) * x - (at * phi) * x0
                    if prev_x0 is not None:
                        r0 = (ls - prev_lam) / h
                        res = res - (0.5 * at * phi / r0) * (x0 - prev_x0)
                prev_x0, prev_lam = x0, ls
                x = res
            done += 1
        x = x.clamp(-1.0, 1.0)
    return time.perf_counter() - start, done


# ----------------------------------------------------------------------------- measurement helpers

def read_status_kib(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def stats(values):
    if not values:
        return dict(count=0, median_s=float("nan"), mean_s=float("nan"), min_s=float("nan"), max_s=float("nan"))
    return dict(count=len(values), median_s=statistics.median(values), mean_s=statistics.fmean(values),
                min_s=min(values), max_s=max(values))


def versions():
    try:
        deb = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "python3-torch"], capture_output=True, text=True).stdout.strip()
    except OSError:
        deb = ""
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = "unknown"
    try:
        cfg = torch.__config__.show()
        blas = next((l.strip() for l in cfg.splitlines() if "BLAS_INFO" in l or "LAPACK_INFO" in l), "unknown")
    except Exception:  # noqa: BLE001 - informational only
        pass
    return dict(implementation="PyTorch", framework="PyTorch", framework_version=torch.__version__,
                libtorch=f"python3-torch {deb}" if deb else f"torch {torch.__version__}",
                runtime=f"Python {platform.python_version()}", torch_threads=torch.get_num_threads(),
                interop_threads=torch.get_num_interop_threads(), os=platform.platform(), cpu=cpu,
                logical_cores=os.cpu_count(),
                note=f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; {blas}; "
                     f"mkldnn={torch.backends.mkldnn.is_available()}")


def run_config(name, args, log):
    cfg = CONFIGS[name]
    o = cfg["net"]
    batch = {"bench": args.bench_batch, "rgb32": args.rgb32_batch}.get(name) or cfg["batch"]
    sample_batch = args.sample_batch or batch
    shape = (o["image_channels"], o["image_size"], o["image_size"])
    gc_collect()
    peak_reset = reset_peak_rss()

    trainer = Trainer(o, batch)
    params = sum(p.numel() for p in trainer.network.parameters())
    log(f"[{name}] {cfg['description']}: {params:,} parameters, batch {batch}, {torch.get_num_threads()} threads")
    gen = torch.Generator().manual_seed(1234)
    batches = [torch.rand((batch,) + shape, generator=gen) * 2 - 1 for _ in range(4)]
    warm, steps = args.train_warmup, args.train_steps
    for i in range(warm):
        trainer.train_step(batches[i % 4])
    trainer.take_mean_loss()
    times = []
    faults0 = minor_faults()
    for i in range(steps):
        s = time.perf_counter()
        trainer.train_step(batches[i % 4])
        times.append(time.perf_counter() - s)
    faults = (minor_faults() - faults0) / steps
    loss = trainer.take_mean_loss()
    train = dict(batch=batch, warmup_steps=warm, step=stats(times), final_loss=loss, minor_faults_per_step=faults)
    log(f"[{name}] train step: median {train['step']['median_s']:.3f} s over {steps} steps "
        f"(min {train['step']['min_s']:.3f}, max {train['step']['max_s']:.3f}); loss {loss:.4f}; {faults:.0f} minor page faults/step")

    # Breakdown: the same train_step with a clock between the phases (first step is a warm-up).
    bt = Trainer(o, batch, seed=1)
    timings = {}
    for i in range(args.breakdown_steps + 1):
        bt.train_step(batches[i % 4], timings if i > 0 else None)
    inf = []
    with torch.inference_mode():
        for i in range(args.breakdown_steps + 1):
            x = batches[i % 4]
            s = time.perf_counter()
            bt.ema_network(x, torch.full((x.shape[0],), 500, dtype=torch.int64))
            if i > 0:
                inf.append(time.perf_counter() - s)
    med = {k: statistics.median(v) for k, v in timings.items()}
    breakdown = dict(steps=args.breakdown_steps, batch=batch, data_s=med["data"], forward_s=med["forward"],
                     backward_s=med["backward"], clip_s=med["clip"], optimizer_s=med["optimizer"], ema_s=med["ema"],
                     other_s=med["other"], total_s=med["total"], forward_inference_s=statistics.median(inf))
    log(f"[{name}] breakdown (median s): " + ", ".join(f"{k} {med[k]:.4f}" for k in
        ["data", "forward", "backward", "clip", "optimizer", "ema", "other"]) + f"; inference forward {breakdown['forward_inference_s']:.4f}")
    del bt

    net = trainer.ema_network
    net.eval()
    seeds = list(range(1, sample_batch + 1))
    sample(net, "ddim", 2, seeds, shape)  # warm-up
    samplers = []
    quick = args.quick
    for label, kind, n, timed in [("DDPM 1000", "ddpm", 1000, args.ddpm_timed_steps),
                                  ("DDIM 50", "ddim", 50, 2 if quick else None),
                                  ("DPM-Solver++ 20", "dpm", 20, 2 if quick else None)]:
        f0 = minor_faults()
        secs, done = sample(net, kind, n, seeds, shape, stop_after=timed)
        faults = (minor_faults() - f0) / done
        extrapolated = done < n
        per_step = secs / done
        total = per_step * n
        samplers.append(dict(name=label, sampler={"ddpm": "Ddpm", "ddim": "Ddim", "dpm": "DpmSolverPlusPlus"}[kind],
                             steps=n, batch=sample_batch, timed_steps=done, extrapolated=extrapolated,
                             s_per_step=per_step, total_s=total, s_per_image=total / sample_batch,
                             minor_faults_per_step=faults))
        log(f"[{name}] {label}: {total / sample_batch:.4f} s/image ({per_step:.3f} s/step for {sample_batch} images"
            + (f", timed {done} of {n} steps and extrapolated)" if extrapolated else ")") + f"; {faults:.0f} minor page faults/step")
    note = None if peak_reset else "VmHWM could not be reset between configurations"
    if sample_batch != batch:
        note = (note + "; " if note else "") + f"sampling batch {sample_batch}"
    return dict(name=name, description=cfg["description"], image=list(shape), network=o, params=params, train=train,
                breakdown=breakdown, samplers=samplers, peak_rss_mb=read_status_kib("VmHWM:") / 1024.0, note=note)


# ----------------------------------------------------------------------------- single ops

def run_ops(repeats, log):
    """Same list as benchmarks/Microsoft.ML.Diffusion.Benchmarks/OpBenchmark.cs."""
    torch.manual_seed(3)
    n = 64
    ops = [
        ("conv3x3 32->32 @28", lambda: nn.Conv2d(32, 32, 3, padding=1), (n, 32, 28, 28)),
        ("conv3x3 1->32 @28 (input)", lambda: nn.Conv2d(1, 32, 3, padding=1), (n, 1, 28, 28)),
        ("conv3x3 64->32 @28 (up, skip cat)", lambda: nn.Conv2d(64, 32, 3, padding=1), (n, 64, 28, 28)),
        ("conv3x3 32->16 @28 (output)", lambda: nn.Conv2d(32, 16, 3, padding=1), (n, 32, 28, 28)),
        ("conv3x3 s2 32->32 @28", lambda: nn.Conv2d(32, 32, 3, stride=2, padding=1), (n, 32, 28, 28)),
        ("conv3x3 64->64 @14", lambda: nn.Conv2d(64, 64, 3, padding=1), (n, 64, 14, 14)),
        ("conv3x3 64->64 @7", lambda: nn.Conv2d(64, 64, 3, padding=1), (n, 64, 7, 7)),
        ("conv1x1 64->192 @7 (qkv)", lambda: nn.Conv2d(64, 192, 1), (n, 64, 7, 7)),
        ("conv1x1 96->64 @14 (skip)", lambda: nn.Conv2d(96, 64, 1), (n, 96, 14, 14)),
        ("groupnorm 8x32 @28", lambda: nn.GroupNorm(8, 32), (n, 32, 28, 28)),
        ("groupnorm 8x64 @14", lambda: nn.GroupNorm(8, 64), (n, 64, 14, 14)),
        ("silu 32 @28", lambda: nn.SiLU(), (n, 32, 28, 28)),
        ("upsample nearest 64 @14->28", lambda: Lambda(lambda x: F.interpolate(x, scale_factor=2.0, mode="nearest")), (n, 64, 14, 14)),
        ("sdpa 1 head, 49 tokens x 64", lambda: Lambda(lambda x: torch.softmax(x @ x.transpose(-2, -1) * 0.125, -1) @ x), (n, 1, 49, 64)),
        ("linear 128->64 (time proj)", lambda: nn.Linear(128, 64), (n, 128)),
    ]

    def median(fn):
        for _ in range(2):
            fn()
        times = []
        for _ in range(repeats):
            s = time.perf_counter()
            fn()
            times.append(time.perf_counter() - s)
        return statistics.median(times)

    # One untimed pass over every op first (allocator, oneDNN primitive cache, thread pool), as in OpBenchmark.cs.
    for _, make, shape in ops:
        m = make()
        x = torch.randn(shape).requires_grad_(True)
        for _ in range(3):
            m(x).sum().backward()
    results = []
    for name, make, shape in ops:
        m = make()
        x = torch.randn(shape)
        with torch.inference_mode():
            fwd = median(lambda: m(x))
        xg = torch.randn(shape).requires_grad_(True)

        def fb():
            xg.grad = None
            m.zero_grad()
            m(xg).sum().backward()
        fwb = median(fb)
        results.append(dict(name=name, forward_s=fwd, forward_backward_s=fwb))
        log(f"[ops] {name:<36} forward {fwd * 1e3:8.2f} ms   forward+backward {fwb * 1e3:8.2f} ms")
    return results


class Lambda(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)


def gc_collect():
    import gc
    gc.collect()


# ----------------------------------------------------------------------------- lockstep server

def serve(args, log):
    """The PyTorch side of benchmarks/lockstep.py; same protocol as LockstepServer.cs (one request per line)."""
    state = {}

    def setup(name):
        state.clear()
        gc_collect()
        cfg = CONFIGS[name]
        o = cfg["net"]
        batch = {"bench": args.bench_batch, "rgb32": args.rgb32_batch}.get(name) or cfg["batch"]
        shape = (o["image_channels"], o["image_size"], o["image_size"])
        trainer = Trainer(o, batch)
        gen = torch.Generator().manual_seed(1234)
        batches = [torch.rand((batch,) + shape, generator=gen) * 2 - 1 for _ in range(4)]
        state.update(trainer=trainer, batches=batches, next=0, shape=shape,
                     seeds=list(range(1, (args.sample_batch or batch) + 1)))
        for _ in range(args.train_warmup):
            trainer.train_step(next_batch())
        # Like DiffusionTrainer.ToModel: a copy of the EMA weights for sampling.
        model = UNetNoisePredictor(o)
        model.load_state_dict(trainer.ema_network.state_dict())
        model.eval()
        state["model"] = model
        sample(model, "ddim", 2, state["seeds"], shape)  # warm-up
        params = sum(p.numel() for p in trainer.network.parameters())
        probe = network_probe(o)
        log(f"[lockstep {name}] ready: {params:,} parameters, batch {batch}, probe {probe[0]:.6e} {probe[1]:.6e}")
        return f"ready {params} {probe[0]:.9e} {probe[1]:.9e}"

    def next_batch():
        b = state["batches"][state["next"] % 4]
        state["next"] += 1
        return b

    def need():
        if "model" not in state:
            raise ValueError("send 'setup NAME' first")

    def train(n):
        need()
        s = time.perf_counter()
        for _ in range(n):
            state["trainer"].train_step(next_batch())
        return (time.perf_counter() - s) / n

    def forward(n):
        need()
        x = next_batch()
        t = torch.full((x.shape[0],), 500, dtype=torch.int64)
        with torch.inference_mode():
            s = time.perf_counter()
            for _ in range(n):
                state["model"](x, t)
            return (time.perf_counter() - s) / n

    def do_sample(kind, steps, timed):
        need()
        if kind not in ("ddpm", "ddim", "dpm"):
            raise ValueError(f"unknown sampler '{kind}' (ddpm, ddim, dpm)")
        secs, done = sample(state["model"], kind, steps, state["seeds"], state["shape"], stop_after=timed or None)
        return secs / done

    def count(word):
        n = int(word)
        if n < 1:
            raise ValueError(f"a count must be a positive whole number, got '{word}'")
        return n

    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        if w[0] == "quit":
            break
        try:
            if w[0] == "setup":
                answer = setup(w[1])
            elif w[0] == "train":
                answer = repr(train(count(w[1])))
            elif w[0] == "forward":
                answer = repr(forward(count(w[1])))
            elif w[0] == "sample":
                answer = repr(do_sample(w[1], int(w[2]), int(w[3])))
            else:
                raise ValueError(f"unknown request '{w[0]}'")
        except (ValueError, KeyError, IndexError) as e:
            answer = "error " + " ".join(str(e).split())
        print(answer, flush=True)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=os.path.join("benchmarks", "results"))
    p.add_argument("--configs", default="bench,rgb32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-warmup", type=int)
    p.add_argument("--train-steps", type=int)
    p.add_argument("--breakdown-steps", type=int)
    p.add_argument("--sample-batch", type=int)
    p.add_argument("--bench-batch", type=int)
    p.add_argument("--rgb32-batch", type=int)
    p.add_argument("--ddpm-timed-steps", type=int)
    p.add_argument("--ops", action="store_true", help="single-op timings on the bench shapes (see OpBenchmark.cs)")
    p.add_argument("--serve", action="store_true", help="answer timing requests on stdin (the PyTorch side of benchmarks/lockstep.py)")
    p.add_argument("--params-only", action="store_true", help="print the parameter counts and exit")
    args = p.parse_args()
    args.train_warmup = args.train_warmup or (1 if args.quick else 3)
    args.train_steps = args.train_steps or (3 if args.quick else 20)
    args.breakdown_steps = args.breakdown_steps or (2 if args.quick else 6)
    args.ddpm_timed_steps = args.ddpm_timed_steps or (2 if args.quick else 50)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    for n in names:
        if n not in CONFIGS:
            p.error(f"unknown configuration {n}; known: {', '.join(CONFIGS)}")

    torch.set_num_threads(args.threads)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    if args.params_only:
        for n in names:
            print(n, sum(p.numel() for p in UNetNoisePredictor(CONFIGS[n]["net"]).parameters()))
        return 0

    if args.serve:
        return serve(args, log)

    v = versions()
    if args.ops:
        ops = run_ops(5 if args.quick else 20, log)
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "pytorch-ops.json"), "w") as f:
            json.dump(dict(implementation="PyTorch", versions=v, ops=ops), f, indent=2)
        return 0
    log(f"PyTorch {v['framework_version']} ({v['libtorch']}), {v['runtime']}, torch threads {v['torch_threads']}, {v['cpu']} x{v['logical_cores']}; {v['note']}")
    results = [run_config(n, args, log) for n in names]
    report = dict(implementation="PyTorch", mode="quick" if args.quick else "full",
                  timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(), versions=v, configs=results)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "pytorch.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print("| config | params | batch | train step (s, median) | DDPM 1000 (s/image) | DDIM 50 (s/image) | DPM-Solver++ 20 (s/image) | peak RSS (MiB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in results:
        cell = {s["name"]: f"{s['s_per_image']:.4f}" + ("*" if s["extrapolated"] else "") for s in c["samplers"]}
        print(f"| {c['name']} ({c['description']}) | {c['params']:,} | {c['train']['batch']} | {c['train']['step']['median_s']:.3f} "
              f"(n={c['train']['step']['count']}) | {cell['DDPM 1000']} | {cell['DDIM 50']} | {cell['DPM-Solver++ 20']} | {c['peak_rss_mb']:.0f} |")
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
