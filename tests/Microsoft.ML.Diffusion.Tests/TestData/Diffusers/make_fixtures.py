#!/usr/bin/env python3
"""Regenerates the diffusers test fixtures by running diffusers' own code (huggingface/diffusers, tag v0.21.4).

    git clone --branch v0.21.4 --depth 1 <the diffusers repository> /tmp/diffusers
    bash eng/install-benchmark-prerequisites.sh        # Debian 12's python3-torch 1.13
    apt-get install python3-packaging python3-filelock python3-regex python3-pil python3-importlib-metadata python3-tqdm
    /usr/bin/python3 tests/Microsoft.ML.Diffusion.Tests/TestData/Diffusers/make_fixtures.py --diffusers /tmp/diffusers/src

python/ holds stand-ins for what Debian 12 lacks: huggingface_hub (imported by diffusers' model and scheduler
code, never called offline) and a small safetensors reader/writer. Everything is seeded: a rerun writes the same
files. Output: one folder per model (config.json + weights, as save_pretrained writes them) and
io.safetensors (inputs, timesteps, class labels and the model's output), and one folder per scheduler with
scheduler_config.json and trajectory.safetensors (initial noise, the noise each step adds, timesteps, samples).
"""
import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Tiny UNet2DModels covering every block type and configuration field the library reads.
MODELS = {
    # diffusers' defaults: positional embedding with flip_sin_to_cos, attention heads of 4 channels, mid attention.
    "unet-attn": dict(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                      down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                      norm_num_groups=4, attention_head_dim=4),
    # google/ddpm-cifar10-32's choices at a tiny size: no flip, freq_shift 1, padding 0, one head per attention, eps 1e-6.
    "unet-ddpm": dict(sample_size=8, in_channels=3, out_channels=3, layers_per_block=2, block_out_channels=(8, 16, 16),
                      down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                      up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, norm_eps=1e-6,
                      flip_sin_to_cos=False, freq_shift=1, downsample_padding=0, attention_head_dim=None),
    # Fourier time embedding (timesteps are noise levels), scale-shift time conditioning, centred input, mish,
    # no mid-block attention, class labels.
    "unet-fourier": dict(sample_size=8, in_channels=2, out_channels=2, layers_per_block=1, block_out_channels=(8, 16),
                         down_block_types=("AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D"),
                         norm_num_groups=4, attention_head_dim=8, time_embedding_type="fourier",
                         resnet_time_scale_shift="scale_shift", center_input_sample=True, act_fn="mish",
                         add_attention=False, num_class_embeds=3, norm_eps=1e-4),
}

# google/ddpm-cifar10-32's UNet2DModel configuration (the DDPM paper's CIFAR-10 network, 35.7 M parameters). Its
# random-weight copy is 143 MB, so it is not committed: --cifar10 DIR writes it for the architecture test.
CIFAR10 = dict(sample_size=32, in_channels=3, out_channels=3, layers_per_block=2, block_out_channels=(128, 256, 256, 256),
               down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
               up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=32, norm_eps=1e-6,
               flip_sin_to_cos=False, freq_shift=1, downsample_padding=0, attention_head_dim=None, act_fn="silu",
               center_input_sample=False, mid_block_scale_factor=1, time_embedding_type="positional")

SCHEDULERS = {
    "ddpm-linear": ("DDPMScheduler", dict(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True,
                                          variance_type="fixed_small"), 10),
    "ddpm-cosine-large": ("DDPMScheduler", dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                                clip_sample=False, variance_type="fixed_large"), 10),
    "ddim-leading": ("DDIMScheduler", dict(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                           set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading"), 10),
    "ddim-trailing-v": ("DDIMScheduler", dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                                              beta_end=0.012, clip_sample=False, prediction_type="v_prediction",
                                              timestep_spacing="trailing"), 8),
    "dpmsolver-multistep": ("DPMSolverMultistepScheduler", dict(num_train_timesteps=1000, beta_schedule="linear",
                                                                algorithm_type="dpmsolver++", solver_order=2), 12),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusers", required=True, help="the src folder of a diffusers v0.21.x checkout")
    parser.add_argument("--out", default=HERE, help="where to write the fixtures (default: beside this script)")
    parser.add_argument("--cifar10", help="write only google/ddpm-cifar10-32's architecture with random weights to this folder")
    args = parser.parse_args()
    sys.path[:0] = [os.path.join(HERE, "python"), args.diffusers]

    import torch
    import diffusers
    from diffusers import UNet2DModel
    from safetensors.torch import save_file

    if not diffusers.__version__.startswith("0.21."):
        sys.exit(f"diffusers {diffusers.__version__} found; the fixtures are made with v0.21.x")
    torch.manual_seed(0)
    torch.set_num_threads(1)   # reproducible reductions

    def reset(folder):
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        return folder

    def randomize(model, seed):
        # Random weights everywhere (diffusers zero-initialises some layers, which would hide mistakes).
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        return model

    def io(model, config, seed):
        g = torch.Generator().manual_seed(seed)
        c, s = config["in_channels"], config["sample_size"]
        sample = torch.randn(2, c, s, s, generator=g)
        fourier = config.get("time_embedding_type") == "fourier"
        timestep = torch.tensor([0.5, 7.0]) if fourier else torch.tensor([3, 517], dtype=torch.int64)
        labels = torch.tensor([2, 0], dtype=torch.int64) if config.get("num_class_embeds") else None
        with torch.no_grad():
            output = model(sample, timestep, class_labels=labels).sample
        tensors = {"sample": sample, "timestep": timestep, "output": output}
        if labels is not None:
            tensors["class_labels"] = labels
        return tensors

    import diffusers.schedulers as schedulers
    if args.cifar10:
        model = UNet2DModel(**CIFAR10).eval()   # diffusers' own initialisation, seeded above
        folder = reset(args.cifar10)
        model.save_pretrained(folder)
        schedulers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True).save_pretrained(folder)   # its scheduler
        save_file(io(model, CIFAR10, seed=400), os.path.join(folder, "io.safetensors"))
        print(folder, sum(p.numel() for p in model.parameters()), "parameters")
        return

    written = []
    for i, (name, config) in enumerate(MODELS.items()):
        model = randomize(UNet2DModel(**config), seed=100 + i).eval()
        folder = reset(os.path.join(args.out, name))
        model.save_pretrained(folder)                       # float32 safetensors
        save_file(io(model, config, seed=200 + i), os.path.join(folder, "io.safetensors"))
        written.append(folder)
        if name == "unet-attn":
            folder = reset(os.path.join(args.out, name + "-bin"))
            model.save_pretrained(folder, safe_serialization=False)   # float32 PyTorch pickle
            written.append(folder)
            for dtype, suffix in ((torch.float16, "fp16"), (torch.bfloat16, "bf16")):
                # Half-precision weights; the reference output is the float32 network on the rounded weights.
                low = UNet2DModel(**config)
                low.load_state_dict(model.state_dict())
                low = low.to(dtype).eval()
                for serialization, tail in ((True, ""), (False, "-bin")):
                    folder = reset(os.path.join(args.out, f"{name}-{suffix}{tail}"))
                    low.save_pretrained(folder, safe_serialization=serialization)
                    written.append(folder)
                rounded = UNet2DModel(**config).eval()
                rounded.load_state_dict({k: v.float() for k, v in low.state_dict().items()})
                save_file(io(rounded, config, seed=200 + i), os.path.join(args.out, f"{name}-{suffix}", "io.safetensors"))

    # Whole sampling trajectories of diffusers' schedulers on unet-attn, with the noise each stochastic step adds recorded.
    unet = UNet2DModel.from_pretrained(os.path.join(args.out, "unet-attn")).eval()
    for i, (name, (kind, config, steps)) in enumerate(SCHEDULERS.items()):
        scheduler = getattr(schedulers, kind)(**config)
        folder = reset(os.path.join(args.out, name))
        scheduler.save_pretrained(folder)
        g = torch.Generator().manual_seed(300 + i)
        noise = torch.randn(2, 1, 8, 8, generator=g)
        step_noise = []

        def draw(shape, generator=None, device=None, dtype=None, layout=None):
            n = torch.randn(shape, generator=g, dtype=torch.float32)
            step_noise.append(n)
            return n

        module = sys.modules[type(scheduler).__module__]
        original = getattr(module, "randn_tensor", None)
        if original is not None:
            module.randn_tensor = draw
        try:
            scheduler.set_timesteps(steps)
            x = noise * scheduler.init_noise_sigma
            samples = []
            with torch.no_grad():
                for t in scheduler.timesteps:
                    out = unet(scheduler.scale_model_input(x, t), t).sample
                    x = scheduler.step(out, t, x).prev_sample
                    samples.append(x)
        finally:
            if original is not None:
                module.randn_tensor = original
        tensors = {"initial_noise": noise, "timesteps": scheduler.timesteps.to(torch.int64), "samples": torch.stack(samples)}
        if step_noise:
            tensors["step_noise"] = torch.stack(step_noise)
        save_file(tensors, os.path.join(folder, "trajectory.safetensors"))
        written.append(folder)

    with open(os.path.join(args.out, "fixtures.json"), "w") as f:
        json.dump({"diffusers": diffusers.__version__, "torch": torch.__version__,
                   "models": list(MODELS), "schedulers": {k: v[0] for k, v in SCHEDULERS.items()}}, f, indent=2)
        f.write("\n")
    for folder in written:
        print(os.path.relpath(folder, args.out), sorted(os.listdir(folder)))


if __name__ == "__main__":
    main()
