#!/usr/bin/env python3
"""Writes sampling trajectories of the schedulers Stable Diffusion folders name, run by diffusers' own code (v0.21.4).

    apt-get install python3-scipy                      # LMSDiscreteScheduler integrates its coefficients with scipy
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 tests/Microsoft.ML.Diffusion.Tests/TestData/Diffusers/make_sd_scheduler_fixtures.py \
        --diffusers /tmp/diffusers/src

It needs the unet-attn folder make_fixtures.py writes, and leaves every other folder alone. The configurations are SD 1.5's
scheduler_config.json (PNDMScheduler) and SD 2's (EulerDiscreteScheduler, v-prediction) as those repositories ship them,
and the schedulers users switch to with X.from_config(pipe.scheduler.config, ...), saved as save_pretrained writes them
(with the fields of the first scheduler diffusers carries along and ignores). Each folder gets scheduler_config.json and
trajectory.safetensors: the standard normal noise the run starts from (before init_noise_sigma), the noise each step
drew, the timesteps (float64), every step's sample in the scheduler's own scale and, for the sigma-based schedulers, their
sigmas (float32), from which the model's input at each step is sample / sqrt(sigma^2 + 1).
"""
import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# runwayml/stable-diffusion-v1-5's scheduler/scheduler_config.json.
SD15 = {"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True,
        "steps_offset": 1, "trained_betas": None, "clip_sample": False}

# stabilityai/stable-diffusion-2's scheduler/scheduler_config.json (768 px, v-prediction; timestep_spacing is absent: linspace).
SD2 = {"_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.10.0.dev0", "beta_end": 0.012,
       "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
       "prediction_type": "v_prediction", "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
       "trained_betas": None}

# name: (scheduler class, base configuration, from_config overrides or None to write the base file as shipped, steps)
FIXTURES = {
    "pndm-sd15": ("PNDMScheduler", SD15, None, 10),
    "pndm-linspace-v": ("PNDMScheduler", SD15, dict(timestep_spacing="linspace", prediction_type="v_prediction"), 12),
    "ddim-sd15": ("DDIMScheduler", SD15, {}, 10),
    "euler-sd2-v": ("EulerDiscreteScheduler", SD2, None, 12),
    "euler-karras-sd15": ("EulerDiscreteScheduler", SD15, dict(use_karras_sigmas=True), 10),
    "euler-leading-karras": ("EulerDiscreteScheduler", SD15, dict(timestep_spacing="leading", use_karras_sigmas=True), 10),
    "euler-trailing": ("EulerDiscreteScheduler", SD15, dict(timestep_spacing="trailing"), 8),
    "euler-ancestral-sd15": ("EulerAncestralDiscreteScheduler", SD15, {}, 10),
    "euler-ancestral-sd2-v": ("EulerAncestralDiscreteScheduler", SD2, {}, 12),
    "euler-ancestral-leading": ("EulerAncestralDiscreteScheduler", SD15, dict(timestep_spacing="leading"), 10),
    "lms-sd15": ("LMSDiscreteScheduler", SD15, {}, 12),
    "lms-leading": ("LMSDiscreteScheduler", SD15, dict(timestep_spacing="leading"), 10),
    "lms-karras-sd2-v": ("LMSDiscreteScheduler", SD2, dict(use_karras_sigmas=True), 12),
    "dpmsolver-sd15": ("DPMSolverMultistepScheduler", SD15, {}, 20),
    "dpmsolver-leading-sd15": ("DPMSolverMultistepScheduler", SD15, dict(timestep_spacing="leading"), 20),
    "dpmsolver-karras-sd15": ("DPMSolverMultistepScheduler", SD15, dict(use_karras_sigmas=True), 20),
    "dpmsolver-karras-sd2-v": ("DPMSolverMultistepScheduler", SD2, dict(use_karras_sigmas=True), 12),
}

SIGMA_SCHEDULERS = {"EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "LMSDiscreteScheduler"}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusers", required=True, help="the src folder of a diffusers v0.21.x checkout")
    parser.add_argument("--out", default=HERE, help="the folder holding unet-attn, where the fixtures go (default: beside this script)")
    args = parser.parse_args()
    sys.path[:0] = [os.path.join(HERE, "python"), args.diffusers]

    import torch
    import diffusers
    import diffusers.schedulers as schedulers
    from diffusers import UNet2DModel
    from safetensors.torch import save_file

    if not diffusers.__version__.startswith("0.21."):
        sys.exit(f"diffusers {diffusers.__version__} found; the fixtures are made with v0.21.x")
    torch.set_num_threads(1)   # reproducible reductions
    unet = UNet2DModel.from_pretrained(os.path.join(args.out, "unet-attn")).eval()

    for i, (name, (kind, base, overrides, steps)) in enumerate(FIXTURES.items()):
        folder = os.path.join(args.out, name)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        if overrides is None:
            # The file as the model repository ships it; diffusers ignores the fields its class does not have.
            assert base["_class_name"] == kind
            scheduler = getattr(schedulers, kind).from_config(base)
            with open(os.path.join(folder, "scheduler_config.json"), "w") as f:
                json.dump(base, f, indent=2, sort_keys=True)
                f.write("\n")
        else:
            # What a user switching schedulers gets: the pipeline's scheduler config, carried into another class.
            pipeline_scheduler = getattr(schedulers, base["_class_name"]).from_config(base)
            scheduler = getattr(schedulers, kind).from_config(pipeline_scheduler.config, **overrides)
            scheduler.save_pretrained(folder)

        g = torch.Generator().manual_seed(500 + i)
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
                    # As StableDiffusionPipeline does: the scaled input, the scheduler's own timestep.
                    out = unet(scheduler.scale_model_input(x, t), t).sample
                    x = scheduler.step(out, t, x).prev_sample
                    samples.append(x)
        finally:
            if original is not None:
                module.randn_tensor = original
        tensors = {"initial_noise": noise, "timesteps": scheduler.timesteps.to(torch.float64), "samples": torch.stack(samples)}
        if step_noise:
            tensors["step_noise"] = torch.stack(step_noise)
        if kind in SIGMA_SCHEDULERS:
            tensors["sigmas"] = scheduler.sigmas.to(torch.float32)
        save_file(tensors, os.path.join(folder, "trajectory.safetensors"))
        print(name, kind, [round(float(t), 3) for t in scheduler.timesteps], "init_noise_sigma", float(scheduler.init_noise_sigma))


if __name__ == "__main__":
    main()
