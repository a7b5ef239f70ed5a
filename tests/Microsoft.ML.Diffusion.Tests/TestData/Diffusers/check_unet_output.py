#!/usr/bin/env python3
"""Checks a class-conditional UNet2DModel folder the library wrote, with diffusers' own code (v0.21.x).

    /usr/bin/python3 check_unet_output.py --diffusers <diffusers checkout>/src --folder <exported folder>

The folder holds what DiffusionModel.SaveDiffusers writes, plus check.safetensors from the test: inputs, timesteps,
class labels (the null class is the last label) and the library's network output ("sample", "timestep",
"class_labels", "output"). diffusers loads the UNet with DDPMPipeline.from_pretrained and runs it on the inputs; the
outputs must match within 1e-4 relative to the largest. Prints "match" and exits 0, or says what differs and exits 1.
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
    from diffusers import DDPMPipeline
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    unet = DDPMPipeline.from_pretrained(args.folder).unet.eval()
    check = load_file(os.path.join(args.folder, "check.safetensors"))
    with torch.no_grad():
        output = unet(check["sample"], check["timestep"], class_labels=check["class_labels"]).sample
    error = ((output - check["output"]).abs().max() / check["output"].abs().max()).item()
    if not error <= 1e-4:
        print(f"UNet2DModel output differs by {error:.2e}")
        sys.exit(1)
    print(f"match (largest difference {error:.2e} of the largest output)")


if __name__ == "__main__":
    main()
