#!/usr/bin/env python3
"""The reference side of benchmarks/sd_lockstep.py: Stable Diffusion 1.5's networks with random weights in diffusers
v0.21.4 (UNet2DConditionModel, AutoencoderKL) and openai/CLIP (the text transformer), timed on the same work as
the C# benchmark's --sd-components mode (SdComponents.cs):

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 benchmarks/diffusers_sd_components.py --diffusers /tmp/diffusers/src \\
        --clip /tmp/clip [--component unet,text,vae] [--size sd15|tiny] [--repeats 3] [--threads 2]

unet: a guided denoising step, the UNet at batch 2 (64x64 latents, 77x768 text states) and
uncond + 7.5 (cond - uncond); text: CLIP ViT-L/14's text transformer up to ln_final (what SD 1.x reads; no
projection) on 2x77 token ids; vae: AutoencoderKL.decode of 1x4x64x64 latents. One warm-up run, then --repeats
timed runs, under torch.inference_mode(). Prints one JSON line per component (the same fields as the C# side):
median seconds (wall clock and process CPU time) and the process's peak RSS (ru_maxrss), so run one component per process for a per-component peak.
"""
import argparse
import importlib.util
import json
import os
import resource
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUBS = os.path.join(ROOT, "tests", "Microsoft.ML.Diffusion.Tests", "TestData", "Diffusers", "python")
GUIDANCE = 7.5


def resident_mib(key="VmRSS:"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux


def unet(torch, tiny):
    from diffusers import UNet2DConditionModel
    if tiny:
        model = UNet2DConditionModel(sample_size=8, block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                     up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=2, cross_attention_dim=32,
                                     layers_per_block=1)
    else:   # runwayml/stable-diffusion-v1-5's unet/config.json; the other fields are diffusers' defaults, which it repeats
        model = UNet2DConditionModel(sample_size=64, block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8,
                                     cross_attention_dim=768, layers_per_block=2)
    model.eval()
    side, tokens, width = model.config.sample_size, 7 if tiny else 77, model.config.cross_attention_dim
    latents = torch.randn(1, 4, side, side)
    text = torch.randn(2, tokens, width)
    t = torch.tensor(981)

    def step():
        # StableDiffusionPipeline.__call__: both halves in one batch, then the guidance combination.
        prediction = model(torch.cat([latents] * 2), t, encoder_hidden_states=text).sample
        uncond, cond = prediction.chunk(2)
        guided = uncond + GUIDANCE * (cond - uncond)
        guided.float().sum().item()
    return model, step, f"sample [2, 4, {side}, {side}], text states [2, {tokens}, {width}], guidance {GUIDANCE}"


def text(torch, tiny, clip_dir):
    # openai/CLIP's own modules (clip/model.py, loaded by path: clip/__init__ imports torchvision and ftfy).
    spec = importlib.util.spec_from_file_location("clip_model", os.path.join(clip_dir, "clip", "model.py"))
    clip = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(clip)
    vocab, width, layers, heads, context = (1000, 32, 2, 4, 7) if tiny else (49408, 768, 12, 12, 77)

    class TextTransformer(torch.nn.Module):
        """CLIP.encode_text up to ln_final: the hidden states SD 1.x conditions on (no pooling, no projection)."""

        def __init__(self):
            super().__init__()
            self.context_length = context
            self.token_embedding = torch.nn.Embedding(vocab, width)
            self.positional_embedding = torch.nn.Parameter(torch.empty(context, width))
            self.transformer = clip.Transformer(width=width, layers=layers, heads=heads, attn_mask=clip.CLIP.build_attention_mask(self))
            self.ln_final = clip.LayerNorm(width)
            torch.nn.init.normal_(self.token_embedding.weight, std=0.02)
            torch.nn.init.normal_(self.positional_embedding, std=0.01)

        def forward(self, ids):
            x = self.token_embedding(ids) + self.positional_embedding
            x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)   # NLD -> LND -> NLD
            return self.ln_final(x)

    model = TextTransformer().eval()
    ids = torch.randint(0, vocab, (2, context))

    def encode():
        model(ids).float().sum().item()
    return model, encode, f"token ids [2, {context}], hidden {width}, {layers} layers"


def vae(torch, tiny):
    from diffusers import AutoencoderKL
    if tiny:
        model = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                              block_out_channels=(32, 64), layers_per_block=1, sample_size=16)
    else:   # the SD 1.x/2.x VAE (stabilityai/sd-vae-ft-mse's config.json)
        model = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                              block_out_channels=(128, 256, 512, 512), layers_per_block=2, sample_size=512)
    model.eval()
    side = model.config.sample_size // 2 ** (len(model.config.block_out_channels) - 1)
    latents = torch.randn(1, 4, side, side)

    def decode():
        model.decode(latents / model.config.scaling_factor).sample.float().sum().item()
    size = model.config.sample_size
    return model, decode, f"latents [1, 4, {side}, {side}] -> image [1, 3, {size}, {size}]"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--diffusers", default="/tmp/diffusers/src", help="diffusers v0.21.4's src folder")
    p.add_argument("--clip", default="/tmp/clip", help="a checkout of github.com/openai/CLIP")
    p.add_argument("--component", default="unet,text,vae")
    p.add_argument("--size", choices=["sd15", "tiny"], default="sd15")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args()
    components = [c.strip() for c in a.component.split(",") if c.strip()]
    for c in components:
        if c not in ("unet", "text", "vae"):
            p.error(f"unknown component {c}; known: unet, text, vae")
    sys.path[:0] = [STUBS, a.diffusers]
    import torch

    torch.set_num_threads(a.threads)
    log = lambda m: print(m, file=sys.stderr, flush=True)
    log(f"torch {torch.__version__}, threads {torch.get_num_threads()}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    for component in components:
        baseline = resident_mib()
        torch.manual_seed(0)
        with torch.inference_mode():
            start = time.perf_counter()
            model, work, described = {"unet": lambda: unet(torch, a.size == "tiny"), "text": lambda: text(torch, a.size == "tiny", a.clip),
                                      "vae": lambda: vae(torch, a.size == "tiny")}[component]()
            build = time.perf_counter() - start
            parameters = sum(q.numel() for q in model.parameters())
            log(f"[diffusers] {component} ({a.size}): {parameters:,} parameters, built in {build:.1f} s; {described}")
            seconds, cpu = [], []
            for r in range(a.repeats + 1):   # the first run warms up and is not counted
                start, cpu_start = time.perf_counter(), time.process_time()
                work()
                s = time.perf_counter() - start
                if r > 0:
                    seconds.append(s)
                    cpu.append(time.process_time() - cpu_start)
                log(f"[diffusers] {component} {'warm-up' if r == 0 else f'run {r}/{a.repeats}'}: {s:.3f} s")
        print(json.dumps(dict(component=component, size=a.size, dtype="float32", threads=torch.get_num_threads(), parameters=parameters,
                              build_seconds=build, seconds=seconds, median_seconds=statistics.median(seconds),
                              median_cpu_seconds=statistics.median(cpu), baseline_rss_mb=baseline,
                              peak_rss_mb=peak_mib(), input=described)), flush=True)
        del model, work


if __name__ == "__main__":
    main()
