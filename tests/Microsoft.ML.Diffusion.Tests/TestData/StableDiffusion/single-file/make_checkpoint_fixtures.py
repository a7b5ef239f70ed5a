#!/usr/bin/env python3
"""Writes the PyTorch checkpoint (.ckpt) fixtures of the restricted unpickler's tests with torch.save itself.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=tests/Microsoft.ML.Diffusion.Tests/TestData/Diffusers/python \
        /usr/bin/python3 tests/Microsoft.ML.Diffusion.Tests/TestData/StableDiffusion/single-file/make_checkpoint_fixtures.py

Seeded: a rerun writes the same tensors. pytorch_lightning is not needed: a stand-in module of the same name gives
the ModelCheckpoint class that Stable Diffusion's Lightning checkpoints use as a key of their "callbacks" entry.
The malicious files are never loaded here with torch.load (that would run them); the C# reader must refuse them.
"""
import collections
import os
import sys
import types

import numpy
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def lightning_stand_in():
    """pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint, importable by that name for pickle."""
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    for name in names:
        sys.modules.setdefault(name, types.ModuleType(name))
    module = sys.modules[names[-1]]

    class ModelCheckpoint:
        pass

    ModelCheckpoint.__module__ = names[-1]
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    module.ModelCheckpoint = ModelCheckpoint
    return ModelCheckpoint


class RunsShell:
    """What a malicious checkpoint holds: unpickling it with Python's pickle would call os.system."""

    def __reduce__(self):
        return (os.system, ("echo this checkpoint ran code > /tmp/mldiffusion-pickle-ran",))


class Evaluates:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def state_dict():
    g = torch.Generator().manual_seed(1234)
    base = torch.randn(4, 6, generator=g)
    return collections.OrderedDict([
        ("f32", torch.randn(2, 3, generator=g)),
        ("f16", torch.randn(5, generator=g).half()),
        ("bf16", torch.randn(3, 2, generator=g).bfloat16()),
        ("f64", torch.randn(2, 2, generator=g).double()),
        ("i64", torch.arange(-3, 3, dtype=torch.int64)),
        ("i32", torch.arange(4, dtype=torch.int32) * 7),
        ("u8", torch.arange(250, 256, dtype=torch.uint8)),
        ("bool", torch.tensor([True, False, True])),
        ("conv1x1", torch.randn(3, 3, 1, 1, generator=g)),
        ("scalar", torch.tensor(2.5)),
        # Views of one storage: a transposed view (not contiguous), a slice at an offset, and the whole.
        ("base", base),
        ("transposed", base.t()),
        ("row2", base[2]),
        ("empty", torch.zeros(0, 3)),
    ])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else HERE
    model_checkpoint = lightning_stand_in()
    sd = state_dict()

    lightning = {
        "epoch": 6,
        "global_step": 875000,
        "pytorch-lightning_version": "1.4.2",
        "state_dict": sd,
        "callbacks": {model_checkpoint: {"monitor": None, "best_model_score": numpy.float64(0.25), "dirpath": "/logs"}},
        "optimizer_states": [],
        "lr_schedulers": [],
    }
    torch.save(lightning, os.path.join(out, "lightning.ckpt"))
    torch.save(sd, os.path.join(out, "state-dict.ckpt"))
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, "state-dict.safetensors"))

    torch.save({"state_dict": sd, "payload": RunsShell()}, os.path.join(out, "malicious-os-system.ckpt"))
    evil = collections.OrderedDict(sd)
    evil["f32"] = Evaluates()
    torch.save(evil, os.path.join(out, "malicious-eval-in-state-dict.ckpt"))
    class_in_state = collections.OrderedDict(sd)
    class_in_state["callback"] = model_checkpoint
    torch.save(class_in_state, os.path.join(out, "class-in-state-dict.ckpt"))
    print("wrote the checkpoint fixtures to", out)


if __name__ == "__main__":
    main()
