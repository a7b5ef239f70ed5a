#!/usr/bin/env python3
"""One Stable Diffusion training step's numbers, as diffusers v0.21.4's examples/text_to_image/train_text_to_image.py
computes them, on the tiny SD 1.x pipeline folder ../pipeline/sd1-tiny.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 \\
        tests/Microsoft.ML.Diffusion.Tests/TestData/StableDiffusion/training/make_training_fixtures.py \\
        --diffusers /tmp/diffusers/src

The script's steps follow the training script's loop: the VAE encodes the pixels (the latent distribution's mean and a
sample with given noise, times scaling_factor), a DDPMScheduler made from the folder's scheduler config adds noise at
the given timesteps, the UNet predicts from the noisy latents and the caption states, and the loss is the MSE to the
target (epsilon, and the velocity for the v-prediction loss). The caption states are the prompt embeddings of
../pipeline/sd1-tiny/io.safetensors (the text encoder's output, checked against diffusers' pipeline there).
loss.backward() gives the gradients of two UNet weights. Everything is seeded: a rerun writes the same bytes.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SD = os.path.dirname(HERE)                               # TestData/StableDiffusion
FOLDER = os.path.join(SD, "pipeline", "sd1-tiny")
STAND_INS = [os.path.join(SD, "pipeline", "python"), os.path.join(SD, "..", "Diffusers", "python")]

TIMESTEPS = [10, 700]
GRADIENTS = {
    "grad_conv_in": "conv_in.weight",
    "grad_attn2_to_k": "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight",
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--diffusers", required=True, help="diffusers v0.21.4's src folder")
    args = parser.parse_args()
    sys.path[:0] = STAND_INS + [args.diffusers]

    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(os.path.join(FOLDER, "unet"))
    vae = AutoencoderKL.from_pretrained(os.path.join(FOLDER, "vae"))
    scheduler = DDPMScheduler.from_pretrained(os.path.join(FOLDER, "scheduler"))
    unet.train()
    vae.requires_grad_(False)

    g = torch.Generator().manual_seed(1234)
    pixels = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    embeds = load_file(os.path.join(FOLDER, "io.safetensors"))["prompt_embeds"]

    with torch.no_grad():
        dist = vae.encode(pixels).latent_dist
        sample_noise = torch.randn(dist.mean.shape, generator=g)
        latents_mean = dist.mean * vae.config.scaling_factor
        latents_sample = (dist.mean + dist.std * sample_noise) * vae.config.scaling_factor
    noise = torch.randn(latents_mean.shape, generator=g)
    timesteps = torch.tensor(TIMESTEPS, dtype=torch.long)
    noisy = scheduler.add_noise(latents_mean, noise, timesteps)
    velocity = scheduler.get_velocity(latents_mean, noise, timesteps)

    pred = unet(noisy, timesteps, embeds).sample
    loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
    loss_v = F.mse_loss(pred.float(), velocity.float(), reduction="mean")
    loss.backward()
    params = dict(unet.named_parameters())

    out = {
        "pixels": pixels, "prompt_embeds": embeds.contiguous(), "sample_noise": sample_noise,
        "latents_mean": latents_mean, "latents_sample": latents_sample,
        "noise": noise, "timesteps": timesteps, "noisy": noisy.detach(), "velocity": velocity,
        "prediction": pred.detach(), "loss": loss.detach().reshape(1), "loss_v": loss_v.detach().reshape(1),
    }
    for key, name in GRADIENTS.items():
        out[key] = params[name].grad.detach().clone()
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(HERE, "training.safetensors"))
    print(f"loss {loss.item():.6f}, v loss {loss_v.item():.6f}, latents range [{latents_mean.min():.3f}, {latents_mean.max():.3f}]")
    for key in GRADIENTS:
        print(f"{key}: largest {out[key].abs().max():.3e}")


if __name__ == "__main__":
    main()
