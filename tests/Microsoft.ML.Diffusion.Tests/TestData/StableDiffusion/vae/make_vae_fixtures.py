#!/usr/bin/env python3
"""Regenerates the AutoencoderKL (Stable Diffusion VAE) fixtures by running diffusers' own code (tag v0.21.4).

    git clone --branch v0.21.4 --depth 1 <the diffusers repository> /tmp/diffusers
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 tests/Microsoft.ML.Diffusion.Tests/TestData/StableDiffusion/vae/make_vae_fixtures.py \
        --diffusers /tmp/diffusers/src

The stand-ins for huggingface_hub and safetensors in ../../Diffusers/python are put on the path. Everything is
seeded: a rerun writes the same files. Each model folder holds config.json and diffusion_pytorch_model.safetensors
as save_pretrained writes them, and io.safetensors with the inputs and diffusers' outputs (see README.md).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
STAND_INS = os.path.join(HERE, "..", "..", "Diffusers", "python")

MODELS = {
    # diffusers' own Stable Diffusion pipeline tests (tests/pipelines/stable_diffusion/test_stable_diffusion.py,
    # get_dummy_components): every other field keeps AutoencoderKL's default (layers_per_block 1, norm_num_groups 32).
    "tiny": (dict(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                  down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
                  up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4), 32),
    # Stable Diffusion's VAE structure (four levels, two layers per block, 8× downsampling) at small widths.
    "sd-blocks": (dict(block_out_channels=[8, 16, 16, 16], in_channels=3, out_channels=3,
                       down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                       layers_per_block=2, latent_channels=4, norm_num_groups=4, sample_size=64), 64),
}

# The names diffusers' AttentionBlock had before diffusers 0.14; from_pretrained renames them.
DEPRECATED = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
SAMPLE_SEED = 1234


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusers", required=True, help="the src folder of a diffusers v0.21.x checkout")
    parser.add_argument("--out", default=HERE, help="where to write the fixtures (default: beside this script)")
    args = parser.parse_args()
    sys.path[:0] = [STAND_INS, args.diffusers]

    import torch
    import diffusers
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file, save_file

    if not diffusers.__version__.startswith("0.21."):
        sys.exit(f"diffusers {diffusers.__version__} found; the fixtures are made with v0.21.x")
    torch.set_num_threads(1)   # reproducible reductions

    def perturb(model, seed):
        # diffusers' initialisation (GroupNorm weights 1, biases 0) plus noise, so that no parameter is trivially 0 or 1.
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * (0.1 if p.dim() == 1 else 0.05))
        return model

    for i, (name, (config, size)) in enumerate(MODELS.items()):
        torch.manual_seed(100 + i)
        vae = perturb(AutoencoderKL(**config), seed=200 + i).eval()
        folder = os.path.join(args.out, name)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        vae.save_pretrained(folder)   # float32 safetensors

        g = torch.Generator().manual_seed(300 + i)
        image = torch.rand(2, 3, size, size, generator=g) * 2 - 1
        downscale = 2 ** (len(config["block_out_channels"]) - 1)
        latents = torch.randn(2, config["latent_channels"], size // downscale, size // downscale, generator=g)
        with torch.no_grad():
            posterior = vae.encode(image).latent_dist
            sample = posterior.sample(generator=torch.Generator().manual_seed(SAMPLE_SEED))
            decoded = vae.decode(latents).sample
            reconstruction = vae(image).sample   # decode of the posterior's mode
        save_file({"image": image, "mean": posterior.mean, "logvar": posterior.logvar, "std": posterior.std,
                   "sample": sample, "sample_seed": torch.tensor([SAMPLE_SEED], dtype=torch.int64),
                   "latents": latents, "decoded": decoded, "reconstruction": reconstruction},
                  os.path.join(folder, "io.safetensors"))

        # diffusers loads the same weights under the deprecated attention names into the same network.
        with tempfile.TemporaryDirectory() as old:
            shutil.copy(os.path.join(folder, "config.json"), old)
            weights = load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
            renamed = {}
            for key, value in weights.items():
                for new, deprecated in DEPRECATED.items():
                    key = key.replace(f".attentions.0.{new}.", f".attentions.0.{deprecated}.")
                renamed[key] = value
            assert any(".query." in k for k in renamed) and not any(".to_q." in k for k in renamed)
            save_file(renamed, os.path.join(old, "diffusion_pytorch_model.safetensors"))
            reloaded = AutoencoderKL.from_pretrained(old, low_cpu_mem_usage=False).eval()
            with torch.no_grad():
                assert torch.equal(reloaded.decode(latents).sample, decoded)

        count = sum(p.numel() for p in vae.parameters())
        print(name, count, "parameters", sorted(os.listdir(folder)),
              f"mean in [{posterior.mean.min():.3f}, {posterior.mean.max():.3f}]",
              f"logvar in [{posterior.logvar.min():.3f}, {posterior.logvar.max():.3f}]",
              f"decoded in [{decoded.min():.3f}, {decoded.max():.3f}]")

    # Stable Diffusion v1's VAE configuration with diffusers' initialisation: its parameter count, for the tests.
    sd = AutoencoderKL(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                       up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4, sample_size=512)
    print("Stable Diffusion v1 VAE:", sum(p.numel() for p in sd.parameters()), "parameters")

    with open(os.path.join(args.out, "fixtures.json"), "w") as f:
        json.dump({"diffusers": diffusers.__version__, "torch": torch.__version__, "models": list(MODELS)}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
