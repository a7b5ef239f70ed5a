#!/usr/bin/env python3
"""Checks that diffusers (v0.21.4) reads the LoRA files the library writes, and records what it computes with them.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 \\
        tests/Microsoft.ML.Diffusion.Tests/TestData/StableDiffusion/lora/make_trained_lora_fixtures.py --diffusers /tmp/diffusers/src

The library's LoRA trainer writes adapters in diffusers' v0.21 layout: an attention projection's factors under its
attention processor, as UNet2DConditionModel.save_attn_procs names them
('down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight', to_out.0 as to_out_lora), any
other layer under its LoRACompatibleLinear / LoRACompatibleConv name ('down_blocks.1.attentions.0.proj_in.lora.down.weight'),
alpha / rank multiplied into up. This script builds such files for two networks, with weights given by a formula the C#
test computes too (exact in float32: small integers / 256), so the C# test can check that the file it writes holds
exactly these tensors:

  layer k (in the ordinal order of the layers' names), role r (0 down, 1 up), element j (row-major):
      ((37 j + 101 k + 53 r) mod 41 - 20) / 256, up then times alpha / rank = 2 / 4

  trained-sd.safetensors      rank 4 on the tiny SD 1.x UNet (../pipeline/sd1-tiny/unet): to_q, to_k, to_v, to_out.0,
                              ff.net.0.proj, ff.net.2, proj_in, proj_out (1x1 convolutions) and every resnet conv1 (3x3)
  trained-unet2d.safetensors  rank 4 on the tiny UNet2DModel (../../Diffusers/unet-attn): to_q, to_k, to_v, to_out.0, conv1
  trained-expected.safetensors
      sd.sample (2, 4, 32, 32), sd.timestep [10, 900], sd.encoder_hidden_states (2, 77, 32); sd.base, the UNet's output,
      and sd.lora, its output after diffusers' own load_attn_procs of trained-sd.safetensors;
      unet2d.sample (2, 1, 8, 8), unet2d.timestep [10, 900]; unet2d.base and unet2d.lora likewise. UNet2DModel has no
      load_attn_procs in v0.21.4 (it lacks UNet2DConditionLoadersMixin), but its layers are LoRACompatibleLinear/Conv:
      the file is loaded by the mixin's own load_attn_procs on a UNet2DModel that also derives from the mixin.

The script asserts that the attention part of trained-sd.safetensors is tensor for tensor what save_attn_procs writes for
LoRAAttnProcessors of these weights, and that those processors compute what load_attn_procs of the file computes.
--check FILE loads any LoRA file the library wrote for the tiny SD UNet with load_attn_procs and prints its output's
distance from sd.lora. A rerun writes the same bytes.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SD = os.path.dirname(HERE)
STAND_INS = [os.path.join(SD, "pipeline", "python"), os.path.normpath(os.path.join(SD, "..", "Diffusers", "python"))]
SD_UNET = os.path.join(SD, "pipeline", "sd1-tiny", "unet")
UNET2D = os.path.normpath(os.path.join(SD, "..", "Diffusers", "unet-attn"))
RANK = 4
ALPHA = 2.0
SD_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out", "conv1"]
UNET2D_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusers", required=True, help="the src folder of a diffusers v0.21.x checkout")
    parser.add_argument("--out", default=HERE)
    parser.add_argument("--check", help="a LoRA file written by the library for the tiny SD UNet: print how far diffusers' output with it is from sd.lora")
    args = parser.parse_args()
    sys.path[:0] = STAND_INS + [args.diffusers]
    import tempfile
    import torch
    from safetensors.torch import load_file, save_file
    from diffusers import UNet2DConditionModel, UNet2DModel
    from diffusers.loaders import UNet2DConditionLoadersMixin
    from diffusers.models.attention_processor import LoRAAttnProcessor
    from diffusers.models.lora import LoRACompatibleConv, LoRACompatibleLinear

    def formula(shape, k, role):
        j = torch.arange(int(torch.tensor(shape).prod()), dtype=torch.int64)
        return (((37 * j + 101 * k + 53 * role) % 41) - 20).to(torch.float32).div(256).reshape(shape)

    def matches(name, pattern):
        return name == pattern or name.endswith("." + pattern)

    def lora_file(model, patterns):
        """The library's layout for the layers of `model` the patterns name, with the formula's weights."""
        layers = sorted(name for name, m in model.named_modules()
                        if isinstance(m, (LoRACompatibleLinear, LoRACompatibleConv)) and any(matches(name, p) for p in patterns))
        tensors = {}
        for k, name in enumerate(layers):
            m = model.get_submodule(name)
            if isinstance(m, LoRACompatibleConv):
                down_shape, up_shape = (RANK, m.in_channels, *m.kernel_size), (m.out_channels, RANK, 1, 1)
            else:
                down_shape, up_shape = (RANK, m.in_features), (m.out_features, RANK)
            parent, last = name.rsplit(".", 1)
            if last in ("to_q", "to_k", "to_v"):
                key = f"{parent}.processor.{last}_lora"
            elif name.endswith(".to_out.0"):
                key = name[: -len(".to_out.0")] + ".processor.to_out_lora"
            else:
                key = name + ".lora"
            tensors[f"{key}.down.weight"] = formula(down_shape, k, 0)
            tensors[f"{key}.up.weight"] = formula(up_shape, k, 1) * (ALPHA / RANK)
        return tensors

    generator = torch.Generator().manual_seed(4321)

    def rand(*shape):
        return torch.randn(*shape, generator=generator)

    # Stable Diffusion's UNet.
    sd_inputs = dict(sample=rand(2, 4, 32, 32), timestep=torch.tensor([10, 900]), encoder_hidden_states=rand(2, 77, 32))
    unet = UNet2DConditionModel.from_pretrained(SD_UNET).eval()
    sd_file = lora_file(unet, SD_TARGETS)
    with torch.no_grad():
        sd_base = unet(**sd_inputs).sample
    unet.load_attn_procs(dict(sd_file))
    with torch.no_grad():
        sd_lora = unet(**sd_inputs).sample

    if args.check:
        expected = load_file(os.path.join(args.out, "trained-expected.safetensors"))
        checked = UNet2DConditionModel.from_pretrained(SD_UNET).eval()
        checked.load_attn_procs(load_file(args.check))
        with torch.no_grad():
            out = checked(sample=expected["sd.sample"], timestep=expected["sd.timestep"].long(), encoder_hidden_states=expected["sd.encoder_hidden_states"]).sample
        print("largest difference from sd.lora", (out - expected["sd.lora"]).abs().max().item(), "range", expected["sd.lora"].abs().max().item())
        return

    # The attention part is what save_attn_procs writes for LoRAAttnProcessors of the same weights.
    procs_unet = UNet2DConditionModel.from_pretrained(SD_UNET).eval()
    procs = {}
    for name in procs_unet.attn_processors.keys():
        cross = None if name.endswith("attn1.processor") else procs_unet.config.cross_attention_dim
        block = procs_unet.get_submodule(name[: -len(".processor")])
        procs[name] = LoRAAttnProcessor(hidden_size=block.to_q.out_features, cross_attention_dim=cross, rank=RANK)
        with torch.no_grad():
            for role_name, p in procs[name].named_parameters():
                p.copy_(sd_file[f"{name}.{role_name}"])
    procs_unet.set_attn_processor(procs)
    with tempfile.TemporaryDirectory() as temp:
        procs_unet.save_attn_procs(temp)
        saved = load_file(os.path.join(temp, "pytorch_lora_weights.safetensors"))
    attention = {k: v for k, v in sd_file.items() if ".processor." in k}
    assert sorted(saved) == sorted(attention), sorted(set(saved) ^ set(attention))[:4]
    for key, value in saved.items():
        assert torch.equal(value, attention[key]), key
    attn_only = UNet2DConditionModel.from_pretrained(SD_UNET).eval()
    attn_only.load_attn_procs(dict(attention))
    with torch.no_grad():
        by_file = attn_only(**sd_inputs).sample
        by_procs = procs_unet(**sd_inputs).sample
    assert (by_file - by_procs).abs().max() < 1e-5, (by_file - by_procs).abs().max()
    assert (sd_lora - by_file).abs().max() > 1e-3   # the layers besides attention matter

    # diffusers' UNet2DModel.
    assert not hasattr(UNet2DModel, "load_attn_procs")   # v0.21.4: no loaders on UNet2DModel

    class LoadableUNet2DModel(UNet2DModel, UNet2DConditionLoadersMixin):
        pass

    unet2d_inputs = dict(sample=rand(2, 1, 8, 8), timestep=torch.tensor([10, 900]))
    unet2d = LoadableUNet2DModel.from_pretrained(UNET2D).eval()
    unet2d_file = lora_file(unet2d, UNET2D_TARGETS)
    with torch.no_grad():
        unet2d_base = unet2d(**unet2d_inputs).sample
    unet2d.load_attn_procs(dict(unet2d_file))
    with torch.no_grad():
        unet2d_lora = unet2d(**unet2d_inputs).sample

    os.makedirs(args.out, exist_ok=True)
    meta = {"format": "pt"}
    save_file({k: v.contiguous() for k, v in sd_file.items()}, os.path.join(args.out, "trained-sd.safetensors"), metadata=meta)
    save_file({k: v.contiguous() for k, v in unet2d_file.items()}, os.path.join(args.out, "trained-unet2d.safetensors"), metadata=meta)
    expected = {
        "sd.sample": sd_inputs["sample"], "sd.timestep": sd_inputs["timestep"].float(),
        "sd.encoder_hidden_states": sd_inputs["encoder_hidden_states"], "sd.base": sd_base, "sd.lora": sd_lora,
        "unet2d.sample": unet2d_inputs["sample"], "unet2d.timestep": unet2d_inputs["timestep"].float(),
        "unet2d.base": unet2d_base, "unet2d.lora": unet2d_lora,
    }
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(args.out, "trained-expected.safetensors"))
    print("sd layers", len(sd_file) // 2, "lora vs base", (sd_lora - sd_base).abs().max().item(),
          "| unet2d layers", len(unet2d_file) // 2, "lora vs base", (unet2d_lora - unet2d_base).abs().max().item())


if __name__ == "__main__":
    main()
