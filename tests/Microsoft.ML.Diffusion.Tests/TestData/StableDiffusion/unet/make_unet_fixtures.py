#!/usr/bin/env python3
"""Regenerates the UNet2DConditionModel fixtures by running diffusers' own code (huggingface/diffusers, tag v0.21.4).

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 tests/Microsoft.ML.Diffusion.Tests/TestData/StableDiffusion/unet/make_unet_fixtures.py \
        --diffusers /tmp/diffusers/src

Needs what ../../Diffusers/make_fixtures.py needs (Debian 12's python3-torch and the stand-ins in ../../Diffusers/python).
Writes one folder per model: config.json and diffusion_pytorch_model.safetensors as save_pretrained writes them, and
io.safetensors with the inputs (sample, timestep, encoder_hidden_states), diffusers' output (output) and the number
of parameters (parameter_count). Everything is seeded: a rerun writes the same files.

Weights start from diffusers' own initialisation (torch.manual_seed(0), as diffusers' pipeline tests build them), then
every parameter gets seeded noise, so that normalisation weights, biases and the layers diffusers initialises to zero
are not trivial. Models saved in float16 (as Stable Diffusion checkpoints usually are, and to keep the files small) have
as reference output what diffusers computes after loading that file, i.e. the float32 network on the rounded weights.
"""
import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STAND_INS = os.path.normpath(os.path.join(HERE, "..", "..", "Diffusers", "python"))

MODELS = {
    # diffusers' StableDiffusionPipeline tests' UNet (tests/pipelines/stable_diffusion/test_stable_diffusion.py,
    # get_dummy_components), exactly: SD 1.x's choices at a tiny size (8 heads, 1x1-convolution projections).
    "sd1-tiny": dict(
        config=dict(block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32),
        dtype="float16", sample=(2, 4, 32, 32), timestep=[10, 900], context=(2, 77, 32)),
    # SD 2.x's choices (linear projections, heads per level, upcast attention, SD's block order: cross-attention
    # levels first) at a tiny size.
    "sd2-tiny": dict(
        config=dict(block_out_channels=(32, 32, 32), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
                    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                    attention_head_dim=(2, 4, 8), use_linear_projection=True, upcast_attention=True,
                    norm_num_groups=32, norm_eps=1e-5, dual_cross_attention=False, only_cross_attention=False,
                    num_class_embeds=None),
        dtype="float16", sample=(2, 4, 24, 24), timestep=[1, 500], context=(2, 77, 32)),
    # Every other setting the library reads, away from its default: per-level layers, transformer depths and
    # only_cross_attention (which the mid block ignores), scale-shift time conditioning, mish, an own time embedding
    # width with activations after it, centred input, no cos-first flip, freq_shift 1, downsample_padding 0, a
    # mid-block scale, inpainting-style 9 input channels, fractional timesteps, and a side (18) the down path halves
    # with rounding, so the up path resizes to the skips' sizes.
    "sd-variants": dict(
        config=dict(block_out_channels=(8, 12, 16), layers_per_block=(1, 2, 1), sample_size=18, in_channels=9,
                    out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=4,
                    norm_eps=1e-6, transformer_layers_per_block=(2, 1, 2), only_cross_attention=(True, False, True),
                    attention_head_dim=(2, 3, 4), cross_attention_dim=12, act_fn="mish",
                    resnet_time_scale_shift="scale_shift", time_embedding_dim=48, time_embedding_act_fn="silu",
                    timestep_post_act="silu", center_input_sample=True, flip_sin_to_cos=False, freq_shift=1,
                    downsample_padding=0, mid_block_scale_factor=1.4142),
        dtype="float32", sample=(2, 9, 18, 18), timestep=[0.5, 999.0], context=(2, 7, 12)),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusers", required=True, help="the src folder of a diffusers v0.21.x checkout")
    parser.add_argument("--out", default=HERE, help="where to write the fixtures (default: beside this script)")
    args = parser.parse_args()
    sys.path[:0] = [STAND_INS, args.diffusers]

    import torch
    import diffusers
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    if not diffusers.__version__.startswith("0.21."):
        sys.exit(f"diffusers {diffusers.__version__} found; the fixtures are made with v0.21.x")
    torch.set_num_threads(1)   # reproducible reductions

    for i, (name, spec) in enumerate(MODELS.items()):
        config = spec["config"]
        torch.manual_seed(0)
        model = UNet2DConditionModel(**config)
        g = torch.Generator().manual_seed(100 + i)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
        folder = os.path.join(args.out, name)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        dtype = getattr(torch, spec["dtype"])
        model.to(dtype).save_pretrained(folder, safe_serialization=True)
        # The reference is what diffusers computes from the file as written (float32, from rounded weights if half).
        model = UNet2DConditionModel.from_pretrained(folder).eval()
        assert next(model.parameters()).dtype == torch.float32

        g = torch.Generator().manual_seed(200 + i)
        sample = torch.randn(*spec["sample"], generator=g)
        context = torch.randn(*spec["context"], generator=g)
        fractional = any(isinstance(t, float) for t in spec["timestep"])
        timestep = torch.tensor(spec["timestep"], dtype=torch.float32 if fractional else torch.int64)
        with torch.no_grad():
            output = model(sample, timestep, context).sample
        count = sum(p.numel() for p in model.parameters())
        save_file({"sample": sample, "timestep": timestep, "encoder_hidden_states": context, "output": output,
                   "parameter_count": torch.tensor(count, dtype=torch.int64)},
                  os.path.join(folder, "io.safetensors"))
        print(name, spec["dtype"], count, "parameters, output range", float(output.min()), float(output.max()),
              "std", float(output.std()))

    with open(os.path.join(args.out, "fixtures.json"), "w") as f:
        json.dump({"diffusers": diffusers.__version__, "torch": torch.__version__, "models": list(MODELS)}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
