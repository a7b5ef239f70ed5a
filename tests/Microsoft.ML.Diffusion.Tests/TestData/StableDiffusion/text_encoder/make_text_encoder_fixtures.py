#!/usr/bin/env python3
"""Regenerates the CLIP text encoder fixtures by running openai/CLIP's own model code (clip/model.py).

    git -C <the openai/CLIP repository> archive HEAD clip | tar -x -C /tmp/clip
    OPENBLAS_NUM_THREADS=1 PYTHONPATH=tests/Microsoft.ML.Diffusion.Tests/TestData/Diffusers/python \\
        /usr/bin/python3 tests/Microsoft.ML.Diffusion.Tests/TestData/StableDiffusion/text_encoder/make_text_encoder_fixtures.py \\
        --clip /tmp/clip/clip

clip/model.py is loaded on its own (its package __init__ needs torchvision, which the text tower does not). The
script builds a tiny CLIP (text tower: width 32, 5 layers, 4 heads, vocabulary 1000, 77 positions: diffusers'
pipeline tests' CLIPTextConfig) and runs CLIP.encode_text with an identity text projection, so the pooled output is
CLIP's own. Two things differ from what clip/model.py hard-codes, and the script changes them from outside:
  * the MLP width is 37 (the test config's intermediate_size), not 4 x 32: each block's c_fc / c_proj is replaced;
  * the "gelu" fixture swaps QuickGELU for nn.GELU (SD 2.x's OpenCLIP ViT-H uses plain gelu) by rebinding
    model.QuickGELU before the model is built.
The penultimate output is what ldm's FrozenOpenCLIPEmbedder(layer="penultimate") computes: every resblock but the
last, then ln_final.

Each fixture folder holds config.json + model.safetensors (transformers' CLIPTextModel names, mapped here),
openclip.safetensors (the same weights as an SD 2.x single file holds them, under cond_stage_model.model., with
text_projection, logit_scale, visual.* and some UNet / VAE keys to ignore) and io.safetensors (ids and outputs).
Everything is seeded: a rerun writes the same files.
"""
import argparse
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "Diffusers", "python"))   # the small safetensors writer

import torch  # noqa: E402
from torch import nn  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

WIDTH, LAYERS, HEADS, VOCAB, CONTEXT, INTERMEDIATE = 32, 5, 4, 1000, 77, 37
PREFIX = "cond_stage_model.model."

# transformers' CLIPTextConfig as diffusers' pipeline tests build it, written as save_pretrained writes it.
CONFIG = {
    "_name_or_path": "hf-internal-testing/tiny-random-clip",
    "architectures": ["CLIPTextModel"],
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": None,   # per fixture
    "hidden_size": WIDTH,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": INTERMEDIATE,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": CONTEXT,
    "model_type": "clip_text_model",
    "num_attention_heads": HEADS,
    "num_hidden_layers": LAYERS,
    "pad_token_id": 1,
    "projection_dim": 512,
    "torch_dtype": "float32",
    "transformers_version": "4.33.2",
    "vocab_size": VOCAB,
}


def load_clip_model(clip_folder):
    spec = importlib.util.spec_from_file_location("clip_model", os.path.join(clip_folder, "model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(clip, gelu, seed):
    """A tiny CLIP whose text tower has the test config's shape, every parameter random."""
    original = clip.QuickGELU
    if gelu:
        clip.QuickGELU = nn.GELU   # ResidualAttentionBlock looks the name up when it is built
    try:
        torch.manual_seed(seed)
        model = clip.CLIP(embed_dim=WIDTH, image_resolution=16, vision_layers=1, vision_width=64, vision_patch_size=8,
                          context_length=CONTEXT, vocab_size=VOCAB, transformer_width=WIDTH, transformer_heads=HEADS,
                          transformer_layers=LAYERS)
    finally:
        clip.QuickGELU = original
    with torch.no_grad():
        for block in model.transformer.resblocks:
            block.mlp.c_fc = nn.Linear(WIDTH, INTERMEDIATE)
            block.mlp.c_proj = nn.Linear(INTERMEDIATE, WIDTH)
        # Biases and norms away from CLIP's zero / one initialisation, so a mix-up of any of them shows.
        for name, p in model.named_parameters():
            if name.startswith("visual.") or name in ("text_projection", "logit_scale"):
                continue
            if name.endswith(".weight") and (".ln_" in name or name.startswith("ln_final")):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
        nn.init.normal_(model.positional_embedding, std=0.1)
        nn.init.normal_(model.token_embedding.weight, std=0.5)
    return model.eval()


def token_ids():
    """Two prompts as CLIP's tokenizers lay them out: start, words, end at 11 and 31; the first padded with the end
    token (SD 1.x), the second with 0 (SD 2.x's "!"). Start / end are the vocabulary's last two ids, as in CLIP's."""
    g = torch.Generator().manual_seed(7)
    start, end = VOCAB - 2, VOCAB - 1
    ids = torch.zeros(2, CONTEXT, dtype=torch.int64)
    for row, (length, pad) in enumerate(((10, end), (30, 0))):
        ids[row, 0] = start
        ids[row, 1:length + 1] = torch.randint(3, VOCAB - 2, (length,), generator=g)
        ids[row, length + 1] = end
        ids[row, length + 2:] = pad
    return ids


def encode(model, ids, drop_last):
    """CLIP.encode_text, capturing ln_final's output (the whole sequence) as well as the pooled token."""
    captured = {}
    hook = model.ln_final.register_forward_hook(lambda module, inputs, output: captured.update(hidden=output))
    blocks = model.transformer.resblocks
    if drop_last:
        model.transformer.resblocks = blocks[:-1]
    try:
        pooled = model.encode_text(ids)
    finally:
        model.transformer.resblocks = blocks
        hook.remove()
    return captured["hidden"], pooled


def to_transformers(text):
    """The text tower's state dict (OpenCLIP / openai names, no prefix) in transformers' CLIPTextModel names."""
    out = {
        "text_model.embeddings.token_embedding.weight": text["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": text["positional_embedding"],
        "text_model.final_layer_norm.weight": text["ln_final.weight"],
        "text_model.final_layer_norm.bias": text["ln_final.bias"],
    }
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
             "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
    for i in range(LAYERS):
        source, target = f"transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}."
        for kind in ("weight", "bias"):
            for a, b in names.items():
                out[f"{target}{b}.{kind}"] = text[f"{source}{a}.{kind}"]
            for part, chunk in zip(("q", "k", "v"), text[f"{source}attn.in_proj_{kind}"].chunk(3, 0)):
                out[f"{target}self_attn.{part}_proj.{kind}"] = chunk
    return {k: v.clone() for k, v in out.items()}   # own storage each: q, k and v must not be views of one stack


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", required=True, help="the clip/ folder of an openai/CLIP checkout")
    parser.add_argument("--out", default=HERE, help="where to write the fixtures (default: beside this script)")
    args = parser.parse_args()
    torch.set_num_threads(1)   # reproducible reductions
    clip = load_clip_model(args.clip)

    ids = token_ids()
    for name, gelu, seed in (("quick_gelu", False, 100), ("gelu", True, 200)):
        model = build(clip, gelu, seed)
        with torch.no_grad():
            model.text_projection.copy_(torch.eye(WIDTH))   # encode_text's pooled token, unprojected
            last, pooled = encode(model, ids, drop_last=False)
            penultimate, _ = encode(model, ids, drop_last=True)
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            state["text_projection"] = torch.randn(WIDTH, 16)   # a real projection, for the file to hold (and the mapping to ignore)

        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        config = dict(CONFIG, hidden_act="gelu" if gelu else "quick_gelu")
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")

        text = {k: v for k, v in state.items() if not k.startswith("visual.")}
        transformers = to_transformers(text)
        if not gelu:
            # Files written before transformers 4.31 hold the position_ids buffer; the loader accepts and ignores it.
            transformers["text_model.embeddings.position_ids"] = torch.arange(CONTEXT, dtype=torch.int64).unsqueeze(0)
            torch.save(transformers, os.path.join(folder, "pytorch_model.bin"))
        save_file(transformers, os.path.join(folder, "model.safetensors"))

        # An SD 2.x single file: the OpenCLIP model under the prefix (text, projection, logit scale and, to keep the
        # file small, the vision tower's smaller tensors), beside other networks' keys.
        single = {PREFIX + k: v for k, v in state.items() if not k.startswith("visual.") or v.numel() <= 4096}
        single["model.diffusion_model.conv_in.weight"] = torch.randn(4, 4, 3, 3)
        single["first_stage_model.decoder.conv_out.bias"] = torch.randn(3)
        save_file(single, os.path.join(folder, "openclip.safetensors"))

        save_file({"input_ids": ids, "last_hidden_state": last, "penultimate": penultimate, "pooled": pooled},
                  os.path.join(folder, "io.safetensors"))
        print(f"{name}: ids {list(ids.shape)}, last {list(last.shape)} range {last.abs().max():.3f}, "
              f"penultimate range {penultimate.abs().max():.3f}, pooled {list(pooled.shape)}")

    with open(os.path.join(args.out, "fixtures.json"), "w") as f:
        json.dump({"torch": torch.__version__, "clip": "openai/CLIP clip/model.py"}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
