#!/usr/bin/env python3
"""Times DDIM sampling of a diffusers UNet2DModel folder in Microsoft.ML.Diffusion and in diffusers itself, alternately.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 benchmarks/diffusers_lockstep.py --diffusers <diffusers v0.21.x src> \\
        --folder <UNet2DModel folder> [--pairs 3] [--batch 16] [--steps 10] [--threads 2]

A folder without scheduler_config.json (the test fixtures) is timed on a copy with diffusers' default DDIMScheduler.

Each pair runs the C# benchmark (--diffusers-sample; it loads the folder, warms up once and times one DDIM run) and
then the same DDIM loop in diffusers (DDIMScheduler from the folder's scheduler config with clip_sample off, the
UNet2DModel forward under no_grad; also one warm-up run first), the order alternating, so slow drifts of this
machine's speed hit both alike. Prints the seconds of both per pair and the median ratio (ours / diffusers).
Needs the C# benchmark built: dotnet build benchmarks/Microsoft.ML.Diffusion.Benchmarks -c Release.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUBS = os.path.join(ROOT, "tests", "Microsoft.ML.Diffusion.Tests", "TestData", "Diffusers", "python")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--diffusers", required=True)
    parser.add_argument("--folder", required=True)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    sys.path[:0] = [STUBS, args.diffusers]
    import torch
    from diffusers import DDIMScheduler, UNet2DModel

    torch.set_num_threads(args.threads)
    name = os.path.basename(os.path.normpath(args.folder))
    if not os.path.exists(os.path.join(args.folder, "scheduler_config.json")):
        # A bare UNet2DModel folder (the test fixtures): time it with diffusers' default DDIMScheduler, on a copy.
        copy = tempfile.mkdtemp(prefix="lockstep-")
        shutil.copytree(args.folder, copy, dirs_exist_ok=True)
        DDIMScheduler().save_config(copy)
        args.folder = copy
    unet = UNet2DModel.from_pretrained(args.folder).eval()
    config = os.path.join(args.folder, "scheduler_config.json")
    scheduler = DDIMScheduler.from_config(json.load(open(config)), clip_sample=False)
    shape = (args.batch, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)

    def ours():
        exe = os.path.join(ROOT, "benchmarks", "Microsoft.ML.Diffusion.Benchmarks", "bin", "Release", "net10.0", "Microsoft.ML.Diffusion.Benchmarks")
        env = dict(os.environ, MLDIFFUSION_THREADS=str(args.threads))
        out = subprocess.run([exe, "--diffusers-sample", args.folder, "--sample-batch", str(args.batch), "--diffusers-steps", str(args.steps),
                              "--threads", str(args.threads)], capture_output=True, text=True, env=env, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])["median_seconds"]

    def theirs():
        seconds = []
        for run in range(2):   # one warm-up run, one timed
            scheduler.set_timesteps(args.steps)
            image = torch.randn(shape, generator=torch.Generator().manual_seed(run))
            start = time.perf_counter()
            with torch.no_grad():
                for t in scheduler.timesteps:
                    image = scheduler.step(unet(image, t).sample, t, image, eta=0.0).prev_sample
            seconds.append(time.perf_counter() - start)
        return seconds[-1]

    rows = []
    for pair in range(args.pairs):
        if pair % 2 == 0:
            a = ours(); b = theirs()
        else:
            b = theirs(); a = ours()
        rows.append((a, b))
        print(f"pair {pair + 1}: ours {a:.3f} s, diffusers {b:.3f} s, ratio {a / b:.3f}", flush=True)
    ratios = [a / b for a, b in rows]
    params = sum(p.numel() for p in unet.parameters())
    print(f"| {name} ({params:,} parameters), batch {args.batch}, DDIM {args.steps} | "
          f"{statistics.median(a for a, _ in rows):.3f} s | {statistics.median(b for _, b in rows):.3f} s | "
          f"{statistics.median(ratios):.3f}× ({min(ratios):.3f}–{max(ratios):.3f}) |")


if __name__ == "__main__":
    main()
