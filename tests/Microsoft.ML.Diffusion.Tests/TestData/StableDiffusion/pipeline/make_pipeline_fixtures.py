#!/usr/bin/env python3
"""Makes two tiny Stable Diffusion pipeline folders and runs diffusers' own StableDiffusionPipeline (v0.21.4) on them.

    git -C <the openai/CLIP repository> archive HEAD clip | tar -x -C /tmp/clip
    git clone --branch v0.21.4 --depth 1 <the diffusers repository> /tmp/diffusers
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 \\
        tests/Microsoft.ML.Diffusion.Tests/TestData/StableDiffusion/pipeline/make_pipeline_fixtures.py \\
        --diffusers /tmp/diffusers/src --clip /tmp/clip

Each folder (sd1-tiny, sd2-tiny) is laid out as StableDiffusionPipeline.save_pretrained lays it out: model_index.json,
unet/, vae/, text_encoder/, tokenizer/, scheduler/. The VAE and text encoder weights and the tokenizer files are those
of ../vae, ../text_encoder and ../tokenizer (copied, or for SD 2's text encoder cut to its penultimate layer); the
UNets are new (diffusers' initialisation, seeded, plus seeded noise on every parameter).

The prompts are tokenized by openai/CLIP's SimpleTokenizer with tokenizer-small's merges and encoded by openai/CLIP's
model code (the same tiny CLIP ../text_encoder/make_text_encoder_fixtures.py builds); transformers is not installed,
so the pipeline runs with text_encoder and tokenizer None and is given prompt_embeds and negative_prompt_embeds.
python/transformers is a stand-in holding only the class names diffusers' pipeline module imports.

io.safetensors in each folder holds the ids, the embeddings, the latents passed in, every step's guided noise
prediction and latents, the final latents, the VAE's decoded image in [-1, 1] and the pipeline's image; fixtures.json
beside this script holds the prompts and the call arguments. Everything is seeded: a rerun writes the same bytes.
"""
import argparse
import functools
import gzip
import importlib.util
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SD = os.path.dirname(HERE)                               # TestData/StableDiffusion
STAND_INS = [os.path.join(HERE, "python"), os.path.join(SD, "..", "Diffusers", "python")]

PROMPTS = ["a photograph of an astronaut riding a horse", "The Cat and the Dog, in a garden"]
NEGATIVE_PROMPT = ""
GUIDANCE_SCALE = 7.5
CONTEXT = 77

# diffusers' own Stable Diffusion pipeline tests (tests/pipelines/stable_diffusion/test_stable_diffusion.py,
# get_dummy_components, v0.21.4); every other field keeps UNet2DConditionModel's default (attention_head_dim 8, ...).
UNET_SD1 = dict(block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                cross_attention_dim=32)
# SD 2.x's choices (linear projections in and out of the transformer, heads given per level as a list, attention
# computed in float32) at half the widths, to keep the file small (1.4 MB instead of 5.7 MB): 4 heads of 8 channels.
UNET_SD2 = dict(UNET_SD1, block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=[2, 4],
                use_linear_projection=True, upcast_attention=True)

# runwayml/stable-diffusion-v1-5's scheduler/scheduler_config.json (clip_sample is not PNDM's: diffusers keeps it as a
# hidden key, as it does when it loads SD 1.5's file).
PNDM_SD1 = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False, clip_sample=False, prediction_type="epsilon")
# stabilityai/stable-diffusion-2's scheduler_config.json: EulerDiscreteScheduler, v-prediction, the SD 1 fields
# (stable-diffusion-2-1 itself ships DDIMScheduler with the same fields).
EULER_SD2 = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                 prediction_type="v_prediction", steps_offset=1, timestep_spacing="leading", clip_sample=False,
                 set_alpha_to_one=False, skip_prk_steps=True)

PIPELINES = {
    # SD 1.x: quick_gelu text encoder's last layer, padding with <|endoftext|>, PNDM; diffusers' test VAE (two levels,
    # so latents are the image over 2), a square image.
    "sd1-tiny": dict(unet=UNET_SD1, unet_seed=10, vae="tiny", text_encoder="quick_gelu", text_seed=100,
                     penultimate=False, pad_token="<|endoftext|>", scheduler=("PNDMScheduler", PNDM_SD1),
                     height=64, width=64, steps=10, latent_seed=20),
    # SD 2.x: gelu text encoder's penultimate layer, padding with "!", Euler with v-prediction; the VAE with SD's four
    # levels (latents are the image over 8), a wide image.
    "sd2-tiny": dict(unet=UNET_SD2, unet_seed=11, vae="sd-blocks", text_encoder="gelu", text_seed=200,
                     penultimate=True, pad_token="!", scheduler=("EulerDiscreteScheduler", EULER_SD2),
                     height=64, width=96, steps=8, latent_seed=21),
}


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_tokenizer(tok, clip):
    """openai/CLIP's SimpleTokenizer over tokenizer-small's merges; its vocabulary must be tokenizer-small's."""
    simple = tok.load_simple_tokenizer(clip)
    folder = os.path.join(SD, "tokenizer", "tokenizer-small")
    with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
        merges = f.read().split("\n")
    assert merges[0].startswith("#version")
    merges = [m for m in merges[1:] if m]
    with tempfile.TemporaryDirectory() as temp:
        gz = os.path.join(temp, "bpe_small.txt.gz")
        with gzip.open(gz, "wt", encoding="utf-8") as f:
            f.write("\n".join(["small CLIP merge list"] + merges))   # SimpleTokenizer skips the first line
        tokenizer = simple.SimpleTokenizer(bpe_path=gz)
    with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
        assert tokenizer.encoder == json.load(f), "SimpleTokenizer's vocabulary differs from tokenizer-small/vocab.json"
    return tokenizer


def token_ids(tokenizer, prompts, pad_token):
    """[start] words [end] [pad]..., 77 ids a row, as diffusers' CLIPTokenizer call (padding="max_length") gives them."""
    bos, eos = tokenizer.encoder["<|startoftext|>"], tokenizer.encoder["<|endoftext|>"]
    pad = tokenizer.encoder[pad_token]
    rows = []
    for prompt in prompts:
        ids = [bos] + tokenizer.encode(prompt) + [eos]
        assert len(ids) <= CONTEXT
        rows.append(ids + [pad] * (CONTEXT - len(ids)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusers", required=True, help="the src folder of a diffusers v0.21.x checkout")
    parser.add_argument("--clip", required=True, help="a checkout of openai/CLIP (the folder holding clip/)")
    parser.add_argument("--out", default=HERE, help="where to write the fixtures (default: beside this script)")
    args = parser.parse_args()
    sys.path[:0] = STAND_INS + [args.diffusers]

    import torch
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
    import diffusers.schedulers as schedulers
    import transformers
    from safetensors.torch import load_file, save_file

    if not diffusers.__version__.startswith("0.21."):
        sys.exit(f"diffusers {diffusers.__version__} found; the fixtures are made with v0.21.x")
    assert transformers.__file__.startswith(STAND_INS[0]), "the transformers stand-in must be the one imported"
    torch.set_num_threads(1)   # reproducible reductions
    diffusers.utils.logging.set_verbosity_error()   # no advice to install accelerate
    diffusers.utils.logging.disable_progress_bar()

    te = load_module(os.path.join(SD, "text_encoder", "make_text_encoder_fixtures.py"), "make_text_encoder_fixtures")
    tok = load_module(os.path.join(SD, "tokenizer", "make_tokenizer_fixtures.py"), "make_tokenizer_fixtures")
    clip_model = te.load_clip_model(os.path.join(args.clip, "clip"))
    tokenizer = small_tokenizer(tok, args.clip)
    assert len(tokenizer.encoder) <= te.VOCAB, "tokenizer-small's ids must fit the tiny text encoder's vocabulary"

    def perturb(model, seed):
        # diffusers' initialisation plus noise, so that no parameter is trivially 0 or 1 (norms, biases, zeroed layers).
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * (0.1 if p.dim() == 1 else 0.05))
        return model

    def copy_files(source, target, names):
        os.makedirs(target)
        for name in names:
            shutil.copyfile(os.path.join(source, name), os.path.join(target, name))

    summary = {"diffusers": diffusers.__version__, "torch": torch.__version__, "prompts": PROMPTS,
               "negative_prompt": NEGATIVE_PROMPT, "pipelines": {}}
    for name, spec in PIPELINES.items():
        folder = os.path.join(args.out, name)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)

        # unet/: diffusers' initialisation under a seed, every parameter perturbed.
        torch.manual_seed(spec["unet_seed"])
        unet = perturb(UNet2DConditionModel(**spec["unet"]), seed=spec["unet_seed"] + 100).eval()
        unet.save_pretrained(os.path.join(folder, "unet"))

        # vae/: the VAE fixture's files as they are.
        copy_files(os.path.join(SD, "vae", spec["vae"]), os.path.join(folder, "vae"),
                   ["config.json", "diffusion_pytorch_model.safetensors"])

        # text_encoder/: the text encoder fixture's weights, rebuilt here with openai/CLIP's code and checked equal.
        clip = te.build(clip_model, gelu=spec["text_encoder"] == "gelu", seed=spec["text_seed"])
        source = os.path.join(SD, "text_encoder", spec["text_encoder"])
        weights = load_file(os.path.join(source, "model.safetensors"))
        text = {k: v for k, v in clip.state_dict().items() if not k.startswith("visual.")}
        rebuilt = te.to_transformers(text)
        assert set(rebuilt) == set(weights) - {"text_model.embeddings.position_ids"}
        assert all(torch.equal(rebuilt[k], weights[k]) for k in rebuilt), f"{source} is not the CLIP the script builds"
        target = os.path.join(folder, "text_encoder")
        if not spec["penultimate"]:
            copy_files(source, target, ["config.json", "model.safetensors"])
        else:
            # SD 2.x as diffusers stores it: the tower without its last layer (the pipeline takes the last hidden
            # state), final_layer_norm kept, num_hidden_layers one less.
            os.makedirs(target)
            last = te.LAYERS - 1
            save_file({k: v for k, v in weights.items() if not k.startswith(f"text_model.encoder.layers.{last}.")},
                      os.path.join(target, "model.safetensors"))
            with open(os.path.join(source, "config.json")) as f:
                config = json.load(f)
            config["num_hidden_layers"] = last
            with open(os.path.join(target, "config.json"), "w") as f:
                json.dump(config, f, indent=2, sort_keys=True)
                f.write("\n")

        # tokenizer/: tokenizer-small's files, written by the tokenizer script (SD 2.x's pad token "!").
        tok.write_folder(tokenizer, os.path.join(folder, "tokenizer"), pad_token=spec["pad_token"])
        if spec["pad_token"] == "<|endoftext|>":
            for file in os.listdir(os.path.join(folder, "tokenizer")):
                with open(os.path.join(folder, "tokenizer", file), "rb") as a, \
                        open(os.path.join(SD, "tokenizer", "tokenizer-small", file), "rb") as b:
                    assert a.read() == b.read(), f"tokenizer/{file} differs from tokenizer-small's"

        # scheduler/: built from the SD file's fields as diffusers loads them, written by diffusers.
        kind, scheduler_config = spec["scheduler"]
        getattr(schedulers, kind).from_config(scheduler_config).save_pretrained(os.path.join(folder, "scheduler"))

        # model_index.json as save_pretrained writes it: a pipeline over the components, with placeholders of the
        # transformers classes standing for the text encoder and tokenizer.
        vae = AutoencoderKL.from_pretrained(os.path.join(folder, "vae"))
        scheduler = getattr(schedulers, kind).from_pretrained(os.path.join(folder, "scheduler"))
        StableDiffusionPipeline(vae=vae, text_encoder=transformers.CLIPTextModel(), tokenizer=transformers.CLIPTokenizer(),
                                unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                requires_safety_checker=False).save_config(folder)

        # The prompts' embeddings, by openai/CLIP's model code (the last or the penultimate layer, then ln_final).
        ids = torch.tensor(token_ids(tokenizer, PROMPTS, spec["pad_token"]), dtype=torch.int64)
        negative_ids = torch.tensor(token_ids(tokenizer, [NEGATIVE_PROMPT] * len(PROMPTS), spec["pad_token"]), dtype=torch.int64)
        with torch.no_grad():
            prompt_embeds, _ = te.encode(clip, ids, drop_last=spec["penultimate"])
            negative_prompt_embeds, _ = te.encode(clip, negative_ids, drop_last=spec["penultimate"])

        # The pipeline as diffusers loads it from the folder (the text encoder and tokenizer left out: transformers').
        pipe = StableDiffusionPipeline.from_pretrained(folder, text_encoder=None, tokenizer=None)
        pipe.set_progress_bar_config(disable=True)
        unet, vae, scheduler = pipe.unet, pipe.vae, pipe.scheduler
        assert type(scheduler).__name__ == kind and not unet.training and not vae.training
        factor = pipe.vae_scale_factor
        height, width = spec["height"], spec["width"]
        g = torch.Generator().manual_seed(spec["latent_seed"])
        latents = torch.randn(len(PROMPTS), unet.config.in_channels, height // factor, width // factor, generator=g)

        def run(output_type):
            # Records every scheduler step (the guided noise prediction and the latents it returns) and every UNet call.
            steps, calls = [], []
            step = scheduler.step

            @functools.wraps(step)   # keeps step's signature: the pipeline inspects it for eta / generator
            def recording_step(model_output, timestep, sample, *a, **k):
                out = step(model_output, timestep, sample, *a, **k)
                steps.append((timestep, model_output.clone(), out[0].clone()))
                return out

            hook = unet.register_forward_hook(lambda module, inputs, output: calls.append(
                (inputs[0].clone(), inputs[1].clone(), output[0].clone())))
            scheduler.step = recording_step
            try:
                result = pipe(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds,
                              latents=latents.clone(), height=height, width=width, num_inference_steps=spec["steps"],
                              guidance_scale=GUIDANCE_SCALE, output_type=output_type)
            finally:
                del scheduler.step
                hook.remove()
            return result.images, steps, calls

        final, steps, calls = run("latent")
        image, steps_again, _ = run("pt")
        assert torch.equal(steps_again[-1][2], final)
        timesteps = scheduler.timesteps.clone()
        init_noise_sigma = scheduler.init_noise_sigma
        assert len(steps) == len(calls) == len(timesteps)
        assert all(torch.equal(torch.as_tensor(t), s) and torch.equal(torch.as_tensor(t), c)
                   for (s, _, _), (_, c, _), t in zip(steps, calls, timesteps))
        with torch.no_grad():
            decoded = vae.decode(final / vae.config.scaling_factor).sample
        assert torch.equal(image, (decoded / 2 + 0.5).clamp(0, 1))

        first_input, _, first_output = calls[0]
        tensors = {
            "input_ids": ids, "negative_input_ids": negative_ids,
            "prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds,
            "latents": latents,
            "init_noise_sigma": torch.tensor([float(init_noise_sigma)], dtype=torch.float32),
            "timesteps": timesteps,
            "unet_input_0": first_input, "unet_output_0": first_output,
            "noise_pred": torch.stack([n for _, n, _ in steps]),
            "step_latents": torch.stack([x for _, _, x in steps]),
            "final_latents": final, "decoded": decoded, "image": image,
        }
        save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(folder, "io.safetensors"))

        summary["pipelines"][name] = {
            "call": {"prompt_embeds": "io: prompt_embeds", "negative_prompt_embeds": "io: negative_prompt_embeds",
                     "latents": "io: latents", "height": height, "width": width, "num_inference_steps": spec["steps"],
                     "guidance_scale": GUIDANCE_SCALE, "output_type": ["latent", "pt"]},
            "scheduler": kind, "pad_token": spec["pad_token"], "text_encoder_layer": "penultimate" if spec["penultimate"] else "last",
            "vae_scale_factor": factor, "init_noise_sigma": float(init_noise_sigma),
            "timesteps": timesteps.tolist(), "timestep_dtype": str(timesteps.dtype).replace("torch.", ""),
            "unet_parameters": sum(p.numel() for p in unet.parameters()),
        }
        print(f"{name}: {kind}, timesteps {timesteps.tolist()} ({timesteps.dtype}), init_noise_sigma {float(init_noise_sigma):.6f}, "
              f"latents {list(latents.shape)}; max |x|: embeds {prompt_embeds.abs().max():.3f}, "
              f"noise_pred {tensors['noise_pred'].abs().max():.3f}, step_latents {tensors['step_latents'].abs().max():.3f}, "
              f"final {final.abs().max():.3f}, decoded {decoded.abs().max():.3f} (in [{decoded.min():.3f}, {decoded.max():.3f}]), "
              f"image in [{image.min():.3f}, {image.max():.3f}]")

    with open(os.path.join(args.out, "fixtures.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
