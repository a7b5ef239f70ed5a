#!/usr/bin/env python3
"""Makes the single-file (original ldm / A1111 layout) Stable Diffusion fixtures with diffusers' own converters.

    git -C <diffusers repository> archive v0.21.4 src scripts | tar -x -C /tmp/diffusers
    OPENBLAS_NUM_THREADS=1 PYTHONPATH=tests/Microsoft.ML.Diffusion.Tests/TestData/Diffusers/python:/tmp/diffusers/src \\
        /usr/bin/python3 tests/Microsoft.ML.Diffusion.Tests/TestData/StableDiffusion/single-file/make_single_file_fixtures.py \\
        --diffusers /tmp/diffusers

A tiny diffusers UNet2DConditionModel and AutoencoderKL with Stable Diffusion's block structure (4 levels,
layers_per_block 2; CrossAttnDownBlock2D x3 + DownBlock2D; mid-block attention) at small widths, seeded random
weights, are converted to the original layout by diffusers v0.21.4's scripts/convert_diffusers_to_original_stable_diffusion.py
(convert_unet_state_dict, convert_vae_state_dict, convert_text_enc_state_dict). That script leaves the VAE's
mid-block attention under diffusers' current names (to_q, to_k, to_v, to_out.0: it looks for the older query/key/
value/proj_attn) and so also skips their reshape; this script finishes the job as the original checkpoints hold
them: q, k, v, proj_out as 1x1 convolutions [C, C, 1, 1]. A tiny SD 1.x text encoder (transformers CLIPTextModel
names; transformers is not installed, so the names and shapes are written out here) is stored under
cond_stage_model.transformer. The single file is then converted back with diffusers' convert_from_ckpt.py
(convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint, loaded from the file by name: the module itself imports
transformers), and the script checks that this gives back every diffusers tensor. single_file.json records the
configs and, for every ldm key, the diffusers name convert_from_ckpt.py gives it. With --architectures it also
writes architectures.json: the full SD 1.5 and SD 2.1 architectures' ldm names and shapes (UNet and VAE from diffusers'
models through the same converters; the text encoders' names and shapes written out) with convert_from_ckpt.py's
diffusers name for every UNet and VAE key; no weights.
"""
import argparse
import ast
import importlib.util
import json
import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(4, 8, 8, 8),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            norm_num_groups=2, cross_attention_dim=8, attention_head_dim=2)
VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
           block_out_channels=(4, 8, 8, 8), layers_per_block=2, latent_channels=4, norm_num_groups=2, sample_size=16)
# The real architectures, for architectures.json (names and shapes only; the models are built once to list them).
SD_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=512)
ARCHITECTURES = {
    "sd15": dict(unet=dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8),
                 text=dict(layout="clip", width=768, layers=12, mlp=3072)),
    "sd21": dict(unet=dict(sample_size=96, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True),
                 text=dict(layout="openclip", width=1024, layers=24, mlp=4096)),
}
TEXT = dict(vocab_size=50, hidden_size=8, intermediate_size=16, num_hidden_layers=2, max_position_embeddings=12)


def text_encoder_state_dict(g):
    """A transformers CLIPTextModel's state dict (names and shapes) with random values."""
    import torch
    d, f = TEXT["hidden_size"], TEXT["intermediate_size"]
    sd = {
        "text_model.embeddings.token_embedding.weight": torch.randn(TEXT["vocab_size"], d, generator=g),
        "text_model.embeddings.position_embedding.weight": torch.randn(TEXT["max_position_embeddings"], d, generator=g),
        "text_model.embeddings.position_ids": torch.arange(TEXT["max_position_embeddings"]).unsqueeze(0),
    }
    for i in range(TEXT["num_hidden_layers"]):
        p = f"text_model.encoder.layers.{i}."
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            sd[p + f"self_attn.{proj}.weight"] = torch.randn(d, d, generator=g)
            sd[p + f"self_attn.{proj}.bias"] = torch.randn(d, generator=g)
        for norm in ("layer_norm1", "layer_norm2"):
            sd[p + f"{norm}.weight"] = torch.randn(d, generator=g)
            sd[p + f"{norm}.bias"] = torch.randn(d, generator=g)
        sd[p + "mlp.fc1.weight"] = torch.randn(f, d, generator=g)
        sd[p + "mlp.fc1.bias"] = torch.randn(f, generator=g)
        sd[p + "mlp.fc2.weight"] = torch.randn(d, f, generator=g)
        sd[p + "mlp.fc2.bias"] = torch.randn(d, generator=g)
    sd["text_model.final_layer_norm.weight"] = torch.randn(d, generator=g)
    sd["text_model.final_layer_norm.bias"] = torch.randn(d, generator=g)
    return sd


def text_encoder_shapes(layout, width, layers, mlp, vocabulary=49408, positions=77):
    """The ldm names and shapes of SD 1.x's CLIP ViT-L/14 (transformers names) or SD 2.x's OpenCLIP ViT-H/14 text encoder."""
    if layout == "clip":
        p = "cond_stage_model.transformer.text_model."
        shapes = {p + "embeddings.token_embedding.weight": [vocabulary, width], p + "embeddings.position_embedding.weight": [positions, width],
                  p + "embeddings.position_ids": [1, positions], p + "final_layer_norm.weight": [width], p + "final_layer_norm.bias": [width]}
        for i in range(layers):
            q = f"{p}encoder.layers.{i}."
            for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
                shapes[q + f"self_attn.{proj}.weight"] = [width, width]
                shapes[q + f"self_attn.{proj}.bias"] = [width]
            for norm in ("layer_norm1", "layer_norm2"):
                shapes[q + f"{norm}.weight"] = [width]
                shapes[q + f"{norm}.bias"] = [width]
            shapes.update({q + "mlp.fc1.weight": [mlp, width], q + "mlp.fc1.bias": [mlp], q + "mlp.fc2.weight": [width, mlp], q + "mlp.fc2.bias": [width]})
        return shapes
    p = "cond_stage_model.model."
    shapes = {p + "positional_embedding": [positions, width], p + "text_projection": [width, width], p + "logit_scale": [],
              p + "token_embedding.weight": [vocabulary, width], p + "ln_final.weight": [width], p + "ln_final.bias": [width]}
    for i in range(layers):
        q = f"{p}transformer.resblocks.{i}."
        shapes.update({q + "ln_1.weight": [width], q + "ln_1.bias": [width], q + "attn.in_proj_weight": [3 * width, width],
                       q + "attn.in_proj_bias": [3 * width], q + "attn.out_proj.weight": [width, width], q + "attn.out_proj.bias": [width],
                       q + "ln_2.weight": [width], q + "ln_2.bias": [width], q + "mlp.c_fc.weight": [mlp, width], q + "mlp.c_fc.bias": [mlp],
                       q + "mlp.c_proj.weight": [width, mlp], q + "mlp.c_proj.bias": [width]})
    return shapes


def architecture(name, spec, to_original, from_ckpt):
    """An SD architecture's ldm names and shapes, and the diffusers name convert_from_ckpt.py gives each UNet and VAE name."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    def placeholders(model):
        # One element of storage per tensor, viewed in the tensor's shape: the converters' views keep its address.
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        base = torch.zeros(len(shapes))
        return {k: base[i].expand(shape) for i, (k, shape) in enumerate(shapes.items())}

    unet = placeholders(UNet2DConditionModel(**spec["unet"]))
    vae = placeholders(AutoencoderKL(**SD_VAE))
    ldm = {"model.diffusion_model." + k: v for k, v in to_original.convert_unet_state_dict(dict(unet)).items()}
    ldm.update({"first_stage_model." + k: v for k, v in original_vae(to_original.convert_vae_state_dict(dict(vae))).items()})
    config = dict(spec["unet"], layers_per_block=2, class_embed_type=None, addition_embed_type=None)
    back_unet = from_ckpt["convert_ldm_unet_checkpoint"](dict(ldm), config)
    back_vae = from_ckpt["convert_ldm_vae_checkpoint"](dict(ldm), dict(SD_VAE))
    if set(back_unet) != set(unet) or set(back_vae) != set(vae):
        sys.exit(f"{name}: convert_from_ckpt does not give back every tensor")
    shapes = {k: list(v.shape) for k, v in ldm.items()}
    shapes.update(text_encoder_shapes(**spec["text"]))
    return {
        "unet_config": spec["unet"],
        "shapes": shapes,
        "convert_from_ckpt_unet": dict(sorted(by_storage({k: v for k, v in ldm.items() if k.startswith("model.")}, back_unet).items())),
        "convert_from_ckpt_vae": dict(sorted(by_storage({k: v for k, v in ldm.items() if k.startswith("first_stage_model.")}, back_vae).items())),
    }


def original_vae(ldm_vae):
    """v0.21.4's convert_vae_state_dict leaves the mid-block attention under today's diffusers names and shapes; the
    original layout has q, k, v, proj_out as 1x1 convolutions."""
    fixed = {}
    for key, value in ldm_vae.items():
        for new, old in (("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")):
            if ".mid.attn_1." + new in key:
                key = key.replace(".mid.attn_1." + new, ".mid.attn_1." + old)
                if key.endswith(".weight"):
                    value = value.reshape(*value.shape, 1, 1)
        fixed[key] = value
    return fixed


def load_script(path):
    spec = importlib.util.spec_from_file_location("convert_diffusers_to_original_stable_diffusion", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_functions(path, names):
    """The named top-level functions of a Python file, run in a namespace of their own (the file's imports need transformers)."""
    import re
    import torch
    with open(path) as f:
        tree = ast.parse(f.read())
    wanted = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    namespace = {"torch": torch, "re": re, "logger": logging.getLogger("convert_from_ckpt")}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), path, "exec"), namespace)
    missing = set(names) - set(namespace)
    if missing:
        sys.exit(f"{path} lacks {sorted(missing)}")
    return namespace


def by_storage(ldm, converted):
    """For every converted (diffusers) tensor, the ldm key whose tensor it is or views (diffusers' converter slices, never copies)."""
    owner = {}
    for key, tensor in ldm.items():
        owner.setdefault(tensor.data_ptr(), []).append(key)
    mapping = {}
    for name, tensor in converted.items():
        keys = owner.get(tensor.data_ptr(), [])
        if len(keys) != 1:
            sys.exit(f"cannot tell which ldm tensor diffusers' {name} comes from: {keys}")
        mapping[keys[0]] = name
    return mapping


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusers", required=True, help="a diffusers v0.21.x checkout with src/ and scripts/")
    parser.add_argument("--out", default=HERE)
    parser.add_argument("--architectures", action="store_true",
                        help="also write architectures.json: SD 1.5's and SD 2.1's names and shapes (builds both full-size models: ~5 GB of memory)")
    args = parser.parse_args()
    sys.path[:0] = [os.path.join(HERE, "..", "..", "Diffusers", "python"), os.path.join(args.diffusers, "src")]

    import torch
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file

    if not diffusers.__version__.startswith("0.21."):
        sys.exit(f"diffusers {diffusers.__version__} found; the fixtures are made with v0.21.x")
    to_original = load_script(os.path.join(args.diffusers, "scripts", "convert_diffusers_to_original_stable_diffusion.py"))
    from_ckpt = load_functions(os.path.join(args.diffusers, "src", "diffusers", "pipelines", "stable_diffusion", "convert_from_ckpt.py"),
                               ["shave_segments", "renew_resnet_paths", "renew_vae_resnet_paths", "renew_attention_paths",
                                "renew_vae_attention_paths", "assign_to_checkpoint", "conv_attn_to_linear",
                                "convert_ldm_unet_checkpoint", "convert_ldm_vae_checkpoint"])

    def randomized(model, seed):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

    torch.manual_seed(0)
    unet = randomized(UNet2DConditionModel(**UNET), 1)
    vae = randomized(AutoencoderKL(**VAE), 2)
    text = text_encoder_state_dict(torch.Generator().manual_seed(3))

    ldm_unet = to_original.convert_unet_state_dict(dict(unet))
    ldm_vae = original_vae(to_original.convert_vae_state_dict(dict(vae)))
    ldm_text = to_original.convert_text_enc_state_dict(dict(text))

    single = {}
    single.update({"model.diffusion_model." + k: v for k, v in ldm_unet.items()})
    single.update({"first_stage_model." + k: v for k, v in ldm_vae.items()})
    single.update({"cond_stage_model.transformer." + k: v for k, v in ldm_text.items()})
    single = {k: v.contiguous() for k, v in single.items()}

    # Back with diffusers' loader of original checkpoints: every diffusers tensor must come back, bit for bit.
    config = dict(UNET, class_embed_type=None, addition_embed_type=None)
    back_unet = from_ckpt["convert_ldm_unet_checkpoint"](dict(single), config)
    back_vae = from_ckpt["convert_ldm_vae_checkpoint"](dict(single), dict(VAE))
    for name, expected, back in (("unet", unet, back_unet), ("vae", vae, back_vae)):
        if set(back) != set(expected):
            sys.exit(f"{name}: convert_from_ckpt gives {sorted(set(back) ^ set(expected))[:10]} differently")
        for key, value in expected.items():
            if not torch.equal(back[key].reshape(value.shape), value):
                sys.exit(f"{name}: convert_from_ckpt's {key} differs")
    unet_mapping = by_storage({k: v for k, v in single.items() if k.startswith("model.diffusion_model.")}, back_unet)
    vae_mapping = by_storage({k: v for k, v in single.items() if k.startswith("first_stage_model.")}, back_vae)

    out = args.out
    save_file(single, os.path.join(out, "model.safetensors"))
    save_file(unet, os.path.join(out, "unet.safetensors"))
    save_file(vae, os.path.join(out, "vae.safetensors"))
    save_file(text, os.path.join(out, "text_encoder.safetensors"))
    with open(os.path.join(out, "single_file.json"), "w") as f:
        json.dump({
            "diffusers": diffusers.__version__,
            "unet_config": UNET, "vae_config": VAE, "text_encoder_config": TEXT,
            "convert_from_ckpt_unet": dict(sorted(unet_mapping.items())),
            "convert_from_ckpt_vae": dict(sorted(vae_mapping.items())),
        }, f, indent=1)
    if args.architectures:
        with open(os.path.join(out, "architectures.json"), "w") as f:
            json.dump({name: architecture(name, spec, to_original, from_ckpt) for name, spec in ARCHITECTURES.items()}, f, separators=(",", ":"))
    print(f"wrote {len(single)} ldm tensors ({len(unet)} UNet, {len(vae)} VAE, {len(text)} text encoder) to {out}")


if __name__ == "__main__":
    main()
