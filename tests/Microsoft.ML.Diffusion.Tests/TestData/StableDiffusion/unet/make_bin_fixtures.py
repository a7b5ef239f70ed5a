"""Writes the PyTorch-pickle (.bin) copies of two fixtures, as older diffusers folders hold their weights:
unet/sd-variants-bin/ (UNet2DConditionModel) and vae/sd-blocks-bin/ (AutoencoderKL), each config.json plus
diffusion_pytorch_model.bin saved by torch.save from the same tensors as the .safetensors fixture beside it.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=tests/Microsoft.ML.Diffusion.Tests/TestData/Diffusers/python \
        /usr/bin/python3 tests/Microsoft.ML.Diffusion.Tests/TestData/StableDiffusion/unet/make_bin_fixtures.py
"""
import os
import shutil
from collections import OrderedDict

import torch
from safetensors.torch import load_file

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
for source, target in [(os.path.join(root, "unet", "sd-variants"), os.path.join(root, "unet", "sd-variants-bin")),
                       (os.path.join(root, "vae", "sd-blocks"), os.path.join(root, "vae", "sd-blocks-bin"))]:
    os.makedirs(target, exist_ok=True)
    shutil.copyfile(os.path.join(source, "config.json"), os.path.join(target, "config.json"))
    tensors = load_file(os.path.join(source, "diffusion_pytorch_model.safetensors"))
    # Separate storages, as diffusers' save_pretrained writes them (no views of one buffer).
    state = OrderedDict((name, tensors[name].clone()) for name in sorted(tensors))
    torch.save(state, os.path.join(target, "diffusion_pytorch_model.bin"))
    print(target, len(state), "tensors")
