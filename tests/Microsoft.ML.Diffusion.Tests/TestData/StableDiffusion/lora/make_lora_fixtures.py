#!/usr/bin/env python3
"""Makes LoRA files for the tiny SD 1.x UNet and text encoder of ../pipeline/sd1-tiny and records what diffusers
(v0.21.4) computes with them.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 \\
        tests/Microsoft.ML.Diffusion.Tests/TestData/StableDiffusion/lora/make_lora_fixtures.py --diffusers /tmp/diffusers/src

Seeded random rank-4 LoRA weights for every attention processor of the UNet (diffusers' LoRAAttnProcessor), saved
by diffusers' own save_attn_procs, and written again in the other layouts by this script:

  attn_procs.safetensors  save_attn_procs' file: 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight'
  diffusers.safetensors   the same UNet weights under 'unet.', plus text-encoder weights
                          'text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.down.weight'
  peft.safetensors        the UNet weights as PEFT names them: 'base_model.model.<module>.lora_A.weight' (down) / lora_B (up)
  kohya.safetensors       Kohya/A1111: 'lora_unet_<module with _>.lora_down.weight', lora_up, alpha (2 for rank 4, up
                          stored times rank/alpha so the product is the same), for the attention processors and also
                          ff, proj_in / proj_out (1x1 convolutions) and resnet conv1 (3x3); text encoder
                          'lora_te_text_model_encoder_layers_0_self_attn_q_proj' and mlp_fc1 / mlp_fc2
  expected.safetensors    inputs (sample, timestep, encoder_hidden_states); the UNet's output without LoRA (base), with
                          the attention processors at scale 0.7 (attn, cross_attention_kwargs={"scale": 0.7}), with
                          diffusers' load_attn_procs of the Kohya file converted by its _convert_kohya_lora_to_diffusers
                          at scale 0.7 (kohya); the text encoder's weights fused by diffusers' PatchedLoraProjection
                          ._fuse_lora(0.7) ('te.<module>.weight', the same for the diffusers and Kohya files)

The script checks that diffusers' Kohya conversion of kohya.safetensors gives the attention weights of the diffusers
file, and that loading it with load_attn_procs computes the same output as the processors. A rerun writes the same bytes.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SD = os.path.dirname(HERE)
STAND_INS = [os.path.join(SD, "pipeline", "python"), os.path.normpath(os.path.join(SD, "..", "Diffusers", "python"))]
UNET = os.path.join(SD, "pipeline", "sd1-tiny", "unet")
TEXT = os.path.join(SD, "pipeline", "sd1-tiny", "text_encoder", "model.safetensors")
RANK = 4
ALPHA = 2.0
SCALE = 0.7


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusers", required=True, help="the src folder of a diffusers v0.21.x checkout")
    parser.add_argument("--out", default=HERE)
    args = parser.parse_args()
    sys.path[:0] = STAND_INS + [args.diffusers]
    import tempfile
    import torch
    from safetensors.torch import load_file, save_file
    from diffusers import UNet2DConditionModel
    from diffusers.loaders import LoraLoaderMixin, PatchedLoraProjection
    from diffusers.models.attention_processor import LoRAAttnProcessor

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(UNET).eval()
    generator = torch.Generator().manual_seed(1234)

    def rand(*shape, std=0.1):
        return torch.randn(*shape, generator=generator) * std

    inputs = dict(sample=rand(2, 4, 32, 32, std=1.0), timestep=torch.tensor([10, 900]),
                  encoder_hidden_states=rand(2, 77, 32, std=1.0))
    with torch.no_grad():
        base = unet(**inputs).sample

    # Attention processors, as diffusers' train_text_to_image_lora.py builds them (v0.21.4).
    procs = {}
    for name in unet.attn_processors.keys():
        cross = None if name.endswith("attn1.processor") else unet.config.cross_attention_dim
        if name.startswith("mid_block"):
            hidden = unet.config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(unet.config.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            hidden = unet.config.block_out_channels[int(name[len("down_blocks.")])]
        proc = LoRAAttnProcessor(hidden_size=hidden, cross_attention_dim=cross, rank=RANK)
        with torch.no_grad():
            for p in proc.parameters():
                p.copy_(rand(*p.shape))
        procs[name] = proc
    unet.set_attn_processor(procs)

    with tempfile.TemporaryDirectory() as temp:
        unet.save_attn_procs(temp)   # before the first forward, which moves the layers out of the processors
        attn_procs = load_file(os.path.join(temp, "pytorch_lora_weights.safetensors"))
    with torch.no_grad():
        attn = unet(**inputs, cross_attention_kwargs={"scale": SCALE}).sample

    # module name → (down, up) of the UNet's attention projections
    unet_layers = {}
    for key, value in attn_procs.items():
        proc, rest = key.split(".processor.")
        lora, role = rest.split(".")[0], rest.split(".")[1]
        module = proc + "." + {"to_q_lora": "to_q", "to_k_lora": "to_k", "to_v_lora": "to_v", "to_out_lora": "to_out.0"}[lora]
        unet_layers.setdefault(module, {})[role] = value

    # Text-encoder layers (attention and MLP of two encoder layers).
    text_weights = load_file(TEXT)
    text_layers = {}
    for i in (0, 3):
        for module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2"):
            name = f"text_model.encoder.layers.{i}.{module}"
            out_f, in_f = text_weights[name + ".weight"].shape
            text_layers[name] = dict(down=rand(RANK, in_f), up=rand(out_f, RANK))
    expected_te = {}
    for name, lora in text_layers.items():
        w = text_weights[name + ".weight"]
        linear = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            linear.weight.copy_(w)
            patched = PatchedLoraProjection(linear, lora_scale=SCALE, network_alpha=None, rank=RANK)
            patched.lora_linear_layer.down.weight.copy_(lora["down"])
            patched.lora_linear_layer.up.weight.copy_(lora["up"])
            patched._fuse_lora(SCALE)
        expected_te[f"te.{name}.weight"] = linear.weight.detach().clone()

    diffusers_file = {f"unet.{k}": v for k, v in attn_procs.items()}
    for name, lora in text_layers.items():
        for role in ("down", "up"):
            diffusers_file[f"text_encoder.{name}.lora_linear_layer.{role}.weight"] = lora[role]

    peft_file = {}
    for module, lora in unet_layers.items():
        peft_file[f"base_model.model.{module}.lora_A.weight"] = lora["down"]
        peft_file[f"base_model.model.{module}.lora_B.weight"] = lora["up"]

    # Kohya: the attention layers plus ff, proj_in / proj_out and resnet convolutions.
    extra = {}
    for module, p in unet.named_modules():
        leaf = module.split(".")[-1]
        if module.endswith(("ff.net.0.proj", "ff.net.2")):
            extra[module] = dict(down=rand(RANK, p.in_features), up=rand(p.out_features, RANK))
        elif leaf in ("proj_in", "proj_out") or (".resnets." in module and leaf == "conv1" and module.startswith(("down_blocks.1", "up_blocks.0"))):
            kh, kw = p.kernel_size
            extra[module] = dict(down=rand(RANK, p.in_channels, kh, kw), up=rand(p.out_channels, RANK, 1, 1))
    kohya_file = {}
    factor = RANK / ALPHA
    for prefix, layers in (("lora_unet_", {**unet_layers, **extra}), ("lora_te_", text_layers)):
        for module, lora in layers.items():
            name = prefix + module.replace(".", "_")
            kohya_file[name + ".lora_down.weight"] = lora["down"]
            kohya_file[name + ".lora_up.weight"] = lora["up"] * factor
            kohya_file[name + ".alpha"] = torch.tensor(ALPHA)

    # diffusers' own conversion of the Kohya file: the attention weights must be the processors'.
    converted, alphas = LoraLoaderMixin._convert_kohya_lora_to_diffusers(dict(kohya_file))
    for key, value in attn_procs.items():
        got = converted["unet." + key]
        alpha = alphas["unet." + key.replace(".up.", ".down.") + ".alpha"] if ".up." in key else None
        want = value * factor if ".up." in key else value
        assert torch.equal(got, want), key
        assert alpha is None or alpha == ALPHA
    converted_te = {k[len("text_encoder."):]: v for k, v in converted.items() if k.startswith("text_encoder.")}
    assert len(converted_te) == 2 * len(text_layers), sorted(converted_te)[:4]

    kohya_unet = UNet2DConditionModel.from_pretrained(UNET).eval()
    unet_part = {k[len("unet."):]: v for k, v in converted.items() if k.startswith("unet.")}
    unet_alphas = {k[len("unet."):]: v for k, v in alphas.items() if k.startswith("unet.")}
    kohya_unet.load_attn_procs(unet_part, network_alphas=unet_alphas)
    with torch.no_grad():
        kohya = kohya_unet(**inputs, cross_attention_kwargs={"scale": SCALE}).sample
    # The attention-only part of the Kohya file computes what the processors compute.
    attn_only = UNet2DConditionModel.from_pretrained(UNET).eval()
    attn_only.load_attn_procs({k: v for k, v in unet_part.items() if ".processor." in k},
                              network_alphas={k: v for k, v in unet_alphas.items() if ".processor." in k})
    with torch.no_grad():
        check = attn_only(**inputs, cross_attention_kwargs={"scale": SCALE}).sample
    assert (check - attn).abs().max() < 1e-5, (check - attn).abs().max()
    assert (kohya - attn).abs().max() > 1e-3   # the extra layers matter

    os.makedirs(args.out, exist_ok=True)
    meta = {"format": "pt"}
    save_file({k: v.contiguous() for k, v in attn_procs.items()}, os.path.join(args.out, "attn_procs.safetensors"), metadata=meta)
    save_file({k: v.contiguous() for k, v in diffusers_file.items()}, os.path.join(args.out, "diffusers.safetensors"), metadata=meta)
    save_file({k: v.contiguous() for k, v in peft_file.items()}, os.path.join(args.out, "peft.safetensors"))
    save_file({k: v.contiguous() for k, v in kohya_file.items()}, os.path.join(args.out, "kohya.safetensors"))
    expected = {"sample": inputs["sample"], "timestep": inputs["timestep"].float(),
                "encoder_hidden_states": inputs["encoder_hidden_states"], "base": base, "attn": attn, "kohya": kohya,
                "scale": torch.tensor(SCALE), **expected_te}
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(args.out, "expected.safetensors"))
    print("attn vs base", (attn - base).abs().max().item(), "kohya vs attn", (kohya - attn).abs().max().item(),
          "unet layers", len(unet_layers), "extra", len(extra), "te layers", len(text_layers))


if __name__ == "__main__":
    main()
