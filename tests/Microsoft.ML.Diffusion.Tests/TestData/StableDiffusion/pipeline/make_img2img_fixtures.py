#!/usr/bin/env python3
"""Runs diffusers' own StableDiffusionImg2ImgPipeline (v0.21.4) on the sd1-tiny and sd2-tiny folders.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 \\
        tests/Microsoft.ML.Diffusion.Tests/TestData/StableDiffusion/pipeline/make_img2img_fixtures.py \\
        --diffusers /tmp/diffusers/src

Run make_pipeline_fixtures.py first: this script reads the folders and their io.safetensors (the prompt embeddings,
and the decoded text-to-image images, which serve as the input images). The pipeline is given prompt_embeds and
negative_prompt_embeds (transformers is not installed; python/transformers is a stand-in) and one torch.Generator per
image. Its randomness, the encoder's latent_dist.sample noise and the noise add_noise mixes in, is drawn inside the
pipeline by diffusers' randn_tensor; the script wraps randn_tensor where the pipeline and the VAE import it and records
what it returns, so a reimplementation can be fed the same noise.

img2img.safetensors in each folder holds the input image, the recorded noise, the encoded latents, the noised start,
every step's latents, the final latents and their decoding; img2img.json beside this script holds the call arguments.
Everything is seeded: a rerun writes the same bytes.
"""
import argparse
import functools
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SD = os.path.dirname(HERE)
STAND_INS = [os.path.join(HERE, "python"), os.path.join(SD, "..", "Diffusers", "python")]

GUIDANCE_SCALE = 7.5
SEEDS = [5, 6]

CALLS = {
    # PNDM (order 1, its second timestep listed twice): strength 0.75 of 10 steps runs the last 7 entries after
    # skipping 3; the input is the text-to-image image cut to 48 × 64, not the model's 64 × 64.
    "sd1-tiny": dict(steps=10, strength=0.75, crop=(48, 64)),
    # Euler with v-prediction: strength 0.6 of 8 steps runs the last 4; the input is 64 × 96 (the model's is 256 × 256).
    "sd2-tiny": dict(steps=8, strength=0.6, crop=None),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusers", required=True, help="the src folder of a diffusers v0.21.x checkout")
    parser.add_argument("--out", default=HERE, help="where to write the fixtures (default: beside this script)")
    args = parser.parse_args()
    sys.path[:0] = STAND_INS + [args.diffusers]

    import torch
    import diffusers
    import diffusers.models.vae as vae_module
    import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img as img2img_module
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import StableDiffusionImg2ImgPipeline
    from safetensors.torch import load_file, save_file

    if not diffusers.__version__.startswith("0.21."):
        sys.exit(f"diffusers {diffusers.__version__} found; the fixtures are made with v0.21.x")
    torch.set_num_threads(1)
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()

    drawn = []   # (where, tensor) for every randn_tensor call, in order

    def recording(where, original):
        @functools.wraps(original)
        def randn_tensor(*a, **k):
            out = original(*a, **k)
            drawn.append((where, out.clone()))
            return out
        return randn_tensor

    vae_module.randn_tensor = recording("vae", vae_module.randn_tensor)
    img2img_module.randn_tensor = recording("pipeline", img2img_module.randn_tensor)

    summary = {"diffusers": diffusers.__version__, "torch": torch.__version__, "seeds": SEEDS, "pipelines": {}}
    for name, spec in CALLS.items():
        folder = os.path.join(args.out, name)
        io = load_file(os.path.join(folder, "io.safetensors"))
        image = io["decoded"].clamp(-1, 1)
        if spec["crop"] is not None:
            h, w = spec["crop"]
            image = image[:, :, :h, :w].contiguous()
        pipe = StableDiffusionImg2ImgPipeline.from_pretrained(folder, text_encoder=None, tokenizer=None,
                                                              safety_checker=None, feature_extractor=None,
                                                              requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        scheduler, vae = pipe.scheduler, pipe.vae

        steps, encoded = [], []
        step = scheduler.step

        @functools.wraps(step)
        def recording_step(model_output, timestep, sample, *a, **k):
            out = step(model_output, timestep, sample, *a, **k)
            steps.append((timestep, sample.clone(), out[0].clone()))
            return out

        encode = vae.encode

        def recording_encode(x, *a, **k):
            encoded.append(x.clone())
            return encode(x, *a, **k)

        scheduler.step = recording_step
        vae.encode = recording_encode
        drawn.clear()
        try:
            generators = [torch.Generator().manual_seed(s) for s in SEEDS]
            final = pipe(image=image, strength=spec["strength"], num_inference_steps=spec["steps"],
                         guidance_scale=GUIDANCE_SCALE, prompt_embeds=io["prompt_embeds"],
                         negative_prompt_embeds=io["negative_prompt_embeds"], generator=generators,
                         output_type="latent").images
        finally:
            del scheduler.step
            del vae.encode

        # The image reaches the encoder unchanged (a [-1, 1] tensor of a size the processor keeps), one row at a time.
        assert len(encoded) == len(SEEDS) and torch.equal(torch.cat(encoded), image)
        # One latent_dist.sample per image (its own generator), then add_noise's noise for the batch.
        assert [w for w, _ in drawn] == ["vae"] * len(SEEDS) + ["pipeline"], [w for w, _ in drawn]
        sample_noise = torch.cat([t for _, t in drawn[:-1]])
        noise = drawn[-1][1]
        with torch.no_grad():
            dist = vae.encode(image).latent_dist
            image_latents = (dist.mean + dist.std * sample_noise) * vae.config.scaling_factor
            decoded = vae.decode(final / vae.config.scaling_factor).sample
        timesteps = [float(t) for t, _, _ in steps]
        start = steps[0][1]
        expected_start = scheduler.add_noise(image_latents, noise, torch.tensor([steps[0][0]] * len(SEEDS)))
        assert torch.allclose(start, expected_start, atol=1e-5), (start - expected_start).abs().max()

        tensors = {
            "image": image, "prompt_embeds": io["prompt_embeds"], "negative_prompt_embeds": io["negative_prompt_embeds"],
            "sample_noise": sample_noise, "noise": noise, "image_latents": image_latents, "start_latents": start,
            "step_latents": torch.stack([x for _, _, x in steps]), "final_latents": final, "decoded": decoded,
        }
        save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(folder, "img2img.safetensors"))
        summary["pipelines"][name] = {
            "call": {"image": "img2img: image", "strength": spec["strength"], "num_inference_steps": spec["steps"],
                     "guidance_scale": GUIDANCE_SCALE, "generator": f"one torch.Generator per image, seeded {SEEDS}",
                     "output_type": "latent"},
            "height": image.shape[2], "width": image.shape[3], "scheduler": type(scheduler).__name__,
            "order": scheduler.order, "timesteps_run": timesteps,
        }
        print(f"{name}: {type(scheduler).__name__}, {list(image.shape)}, timesteps run {timesteps}; max |x|: "
              f"image_latents {image_latents.abs().max():.3f}, start {start.abs().max():.3f}, final {final.abs().max():.3f}, "
              f"decoded {decoded.abs().max():.3f}")

    with open(os.path.join(args.out, "img2img.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
