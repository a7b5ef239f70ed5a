#!/usr/bin/env python3
"""Makes the fixtures of StableDiffusionSingleFile.Load: two whole tiny single files (UNet, VAE, text encoder) and what
diffusers computes with the same networks under its own names.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=tests/Microsoft.ML.Diffusion.Tests/TestData/Diffusers/python:/tmp/diffusers/src \\
        /usr/bin/python3 tests/Microsoft.ML.Diffusion.Tests/TestData/StableDiffusion/single-file/make_load_fixtures.py \\
        --diffusers /tmp/diffusers

sd1-tiny.ckpt: a Lightning-style torch.save ({"state_dict": ..., "global_step": 470000}) of an SD 1.x single file:
model.diffusion_model.* (a tiny UNet2DConditionModel with SD's block structure, 1x1-convolution projections,
cross_attention_dim 32), first_stage_model.* (a tiny AutoencoderKL with SD's block structure) and
cond_stage_model.transformer.* (../text_encoder/quick_gelu/model.safetensors, with position_ids), plus schedule buffers
and one model_ema tensor, as original checkpoints hold them.
sd2-tiny.safetensors: the same in float16 for SD 2.x: a UNet with linear projections and the OpenCLIP text encoder
cond_stage_model.model.* of ../text_encoder/gelu/openclip.safetensors.
UNet and VAE go to the original layout with make_single_file_fixtures.py's use of diffusers' converters, and come back
bit for bit through diffusers' convert_from_ckpt.py; load.json records, for every ldm key, the diffusers name
convert_from_ckpt.py gives it, and the scheduler configuration download_from_original_stable_diffusion_ckpt makes
with its default scheduler_type "pndm" (its DDIMScheduler settings then PNDMScheduler.from_config with skip_prk_steps).
load-io.safetensors: diffusers' forwards of the UNets and VAEs on seeded inputs.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_single_file_fixtures as base  # noqa: E402

BLOCKS = dict(block_out_channels=(4, 8, 8, 8), layers_per_block=2, norm_num_groups=2,
              down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
              up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
UNETS = {
    # SD 1.x: a fixed number of heads per level (2 here, 8 in SD); SD 2.x: heads of fixed width (4 here, 64 in SD).
    "sd1": dict(BLOCKS, sample_size=8, cross_attention_dim=32, attention_head_dim=2),
    "sd2": dict(BLOCKS, sample_size=8, cross_attention_dim=32, attention_head_dim=(1, 2, 2, 2), use_linear_projection=True),
}
VAE = base.VAE
SCHEDULE_BUFFERS = ["betas", "alphas_cumprod", "alphas_cumprod_prev"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusers", required=True)
    parser.add_argument("--out", default=HERE)
    args = parser.parse_args()
    sys.path[:0] = [os.path.join(HERE, "..", "..", "Diffusers", "python"), os.path.join(args.diffusers, "src")]
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, UNet2DConditionModel
    from safetensors.torch import load_file, save_file

    to_original = base.load_script(os.path.join(args.diffusers, "scripts", "convert_diffusers_to_original_stable_diffusion.py"))
    from_ckpt = base.load_functions(os.path.join(args.diffusers, "src", "diffusers", "pipelines", "stable_diffusion", "convert_from_ckpt.py"),
                                    ["shave_segments", "renew_resnet_paths", "renew_vae_resnet_paths", "renew_attention_paths",
                                     "renew_vae_attention_paths", "assign_to_checkpoint", "conv_attn_to_linear",
                                     "convert_ldm_unet_checkpoint", "convert_ldm_vae_checkpoint"])
    text_dir = os.path.join(HERE, "..", "text_encoder")
    texts = {"sd1": {"cond_stage_model.transformer." + k: v for k, v in load_file(os.path.join(text_dir, "quick_gelu", "model.safetensors")).items()},
             "sd2": load_file(os.path.join(text_dir, "gelu", "openclip.safetensors"))}
    texts["sd2"] = {k: v for k, v in texts["sd2"].items() if k.startswith("cond_stage_model.model.")}
    dtypes = {"sd1": torch.float32, "sd2": torch.float16}

    def randomized(model, seed, dtype):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_((torch.randn(p.shape, generator=g) * 0.5).to(dtype).float())   # values the stored dtype holds exactly
        return model.eval()

    io, record = {}, {"diffusers": "0.21.4", "vae_config": VAE}
    g = torch.Generator().manual_seed(10)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    timestep = torch.tensor([10, 700])
    context = torch.randn(2, 7, 32, generator=g)
    image = torch.randn(1, 3, 16, 16, generator=g)
    latents = torch.randn(1, 4, 2, 2, generator=g)
    io.update(sample=sample, timestep=timestep, context=context, image=image, latents=latents)
    for seed, (name, config) in enumerate(UNETS.items()):
        unet_model = randomized(UNet2DConditionModel(**config), 20 + seed, dtypes[name])
        vae_model = randomized(AutoencoderKL(**VAE), 30 + seed, dtypes[name])
        unet = {k: v.detach().clone().contiguous() for k, v in unet_model.state_dict().items()}
        vae = {k: v.detach().clone().contiguous() for k, v in vae_model.state_dict().items()}
        single = {"model.diffusion_model." + k: v for k, v in to_original.convert_unet_state_dict(dict(unet)).items()}
        single.update({"first_stage_model." + k: v for k, v in base.original_vae(to_original.convert_vae_state_dict(dict(vae))).items()})
        single = {k: v.contiguous() for k, v in single.items()}
        back_unet = from_ckpt["convert_ldm_unet_checkpoint"](dict(single), dict(config, class_embed_type=None, addition_embed_type=None))
        back_vae = from_ckpt["convert_ldm_vae_checkpoint"](dict(single), dict(VAE))
        for part, expected, back in (("unet", unet, back_unet), ("vae", vae, back_vae)):
            if set(back) != set(expected) or any(not torch.equal(back[k].reshape(v.shape), v) for k, v in expected.items()):
                sys.exit(f"{name} {part}: convert_from_ckpt does not give back every tensor")
        record[name] = {
            "unet_config": {k: v for k, v in unet_model.config.items() if k != "_use_default_values"},   # a set: no fixed order
            "convert_from_ckpt_unet": dict(sorted(base.by_storage({k: v for k, v in single.items() if k.startswith("model.")}, back_unet).items())),
            "convert_from_ckpt_vae": dict(sorted(base.by_storage({k: v for k, v in single.items() if k.startswith("first_stage_model.")}, back_vae).items())),
        }
        single.update(texts[name])
        # Not weights: the training schedule's buffers and an EMA copy.
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
        single["betas"] = betas.float()
        single["alphas_cumprod"] = torch.cumprod(1 - betas, 0).float()
        single["alphas_cumprod_prev"] = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)[:-1]]).float()
        single["model_ema.decay"] = torch.tensor(0.9999)
        single = {k: (v.to(dtypes[name]) if v.is_floating_point() and not k.startswith(tuple(SCHEDULE_BUFFERS)) else v).contiguous()
                  for k, v in single.items()}

        # diffusers' default scheduler for a single file: DDIMScheduler's settings, then PNDM (scheduler_type "pndm").
        prediction = "epsilon" if name == "sd1" else "v_prediction"
        ddim = DDIMScheduler(beta_end=0.012, beta_schedule="scaled_linear", beta_start=0.00085, num_train_timesteps=1000,
                             steps_offset=1, clip_sample=False, set_alpha_to_one=False, prediction_type=prediction)
        ddim.register_to_config(clip_sample=False)
        scheduler_config = dict(ddim.config)
        scheduler_config["skip_prk_steps"] = True
        pndm = PNDMScheduler.from_config(scheduler_config)
        record[name]["scheduler"] = json.loads(pndm.to_json_string())

        with torch.no_grad():
            io[f"{name}_unet_output"] = unet_model(sample, timestep, context).sample
            io[f"{name}_vae_mean"] = vae_model.encode(image).latent_dist.mean
            io[f"{name}_vae_decoded"] = vae_model.decode(latents).sample
        if name == "sd1":
            torch.save({"state_dict": single, "global_step": 470000, "epoch": 3}, os.path.join(args.out, "sd1-tiny.ckpt"))
        else:
            save_file(single, os.path.join(args.out, "sd2-tiny.safetensors"))
        print(f"{name}: {len(single)} tensors")
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(args.out, "load-io.safetensors"))
    with open(os.path.join(args.out, "load.json"), "w") as f:
        json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
