#!/usr/bin/env python3
"""Checks a diffusers folder the library wrote, with diffusers' own code (v0.21.x).

    /usr/bin/python3 check_export.py --diffusers <diffusers checkout>/src --folder <exported folder>

The folder holds what DiffusionModel.SaveDiffusers writes, plus check.safetensors from the test: inputs, timesteps and
the library's network output ("sample", "timestep", "output"), and a DDIM trajectory ("initial_noise", "steps", "images").
diffusers loads the folder with DDPMPipeline.from_pretrained, runs its UNet2DModel on the inputs and its DDIMScheduler
(from the exported scheduler config, as DDIMPipeline would) from the same noise; both must match within 1e-4 relative.
Prints "match" and exits 0, or says what differs and exits 1.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--diffusers", required=True)
    parser.add_argument("--folder", required=True)
    args = parser.parse_args()
    sys.path[:0] = [os.path.join(HERE, "python"), args.diffusers]
    import torch
    from diffusers import DDIMScheduler, DDPMPipeline
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    pipeline = DDPMPipeline.from_pretrained(args.folder)
    unet = pipeline.unet.eval()
    check = load_file(os.path.join(args.folder, "check.safetensors"))

    def relative(a, b):
        return ((a - b).abs().max() / b.abs().max()).item()

    failures = []
    with torch.no_grad():
        output = unet(check["sample"], check["timestep"]).sample
        error = relative(output, check["output"])
        if not error <= 1e-4:
            failures.append(f"UNet2DModel output differs by {error:.2e}")

        scheduler = DDIMScheduler.from_config(pipeline.scheduler.config, clip_sample=False)   # the test samples without clipping
        scheduler.set_timesteps(int(check["steps"].item()))
        image = check["initial_noise"].clone()
        for t in scheduler.timesteps:
            image = scheduler.step(unet(image, t).sample, t, image, eta=0.0).prev_sample
        error = relative(image, check["images"])
        if not error <= 1e-4:
            failures.append(f"DDIM images differ by {error:.2e}")
    if failures:
        print("; ".join(failures))
        sys.exit(1)
    print("match")


if __name__ == "__main__":
    main()
