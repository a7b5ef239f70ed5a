#!/usr/bin/env python3
"""Adds diffusers' outputs to the folders DefaultNetworkExportTests.WriteTheFixtureFolders wrote (diffusers v0.21.4).

    MLDIFFUSION_WRITE_DEFAULT_FIXTURES=<this folder> dotnet test tests/Microsoft.ML.Diffusion.Tests -c Release \
        --filter "FullyQualifiedName~DefaultNetworkExportTests.WriteTheFixtureFolders"
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 make_fixtures.py --diffusers /tmp/diffusers/src

Each folder (unconditional, class, text, vector) is a model TrainDiffusion trained with its default network and
SaveDiffusers wrote, with inputs.safetensors from the library: samples, timesteps, a null-row mask, the condition and,
for text and vector models, the states the library's condition encoder makes of it (encoder_hidden_states). This script
loads each folder with diffusers' own classes and writes diffusers.safetensors beside the inputs:
  - unconditional: DDPMPipeline.from_pretrained(folder); its UNet2DModel's output on the inputs ("output"), and a
    5-step DDPMPipeline run of two images with output_type "np" ("pipeline_images") with the noise it drew, replayed
    from the same seed ("pipeline_initial_noise", "pipeline_step_noise", "pipeline_steps");
  - class: DDPMPipeline.from_pretrained(folder)'s UNet2DModel with class_labels (a null row gets the learned null class,
    the label after the last class);
  - text, vector: UNet2DConditionModel.from_pretrained(folder, subfolder="unet") on encoder_hidden_states, and
    DDPMScheduler.from_pretrained(folder, subfolder="scheduler") to check that the scheduler reads.
Needs Debian's python3-torch and the stand-ins in ../Diffusers/python (huggingface_hub, safetensors).
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusers", required=True, help="the src folder of a diffusers v0.21.x checkout")
    parser.add_argument("--folder", default=HERE, help="the folder holding the kinds' folders (default: beside this script)")
    args = parser.parse_args()
    sys.path[:0] = [os.path.join(HERE, "..", "Diffusers", "python"), args.diffusers]

    import torch
    import diffusers
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DConditionModel
    from diffusers.utils.torch_utils import randn_tensor
    from safetensors.torch import load_file, save_file

    if not diffusers.__version__.startswith("0.21."):
        sys.exit(f"diffusers {diffusers.__version__} found; the fixtures are made with v0.21.x")
    torch.set_num_threads(1)

    for kind in ("unconditional", "class", "text", "vector"):
        folder = os.path.join(args.folder, kind)
        inputs = load_file(os.path.join(folder, "inputs.safetensors"))
        out = {}
        with torch.no_grad():
            if kind in ("unconditional", "class"):
                pipeline = DDPMPipeline.from_pretrained(folder)
                unet = pipeline.unet.eval()
                if kind == "class":
                    # The learned null class is the label after the last class: num_class_embeds - 1.
                    null_label = unet.config.num_class_embeds - 1
                    labels = torch.where(inputs["null"].bool(), torch.full_like(inputs["class_labels"], null_label), inputs["class_labels"])
                    out["output"] = unet(inputs["sample"], inputs["timestep"], class_labels=labels).sample
                else:
                    out["output"] = unet(inputs["sample"], inputs["timestep"]).sample
                    steps, seed = 5, 3
                    images = pipeline(batch_size=2, generator=torch.Generator().manual_seed(seed), num_inference_steps=steps,
                                      output_type="np").images
                    # The same draws again, in the pipeline's order: the starting noise, then one per step with t > 0.
                    replay = torch.Generator().manual_seed(seed)
                    shape = (2, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
                    out["pipeline_initial_noise"] = randn_tensor(shape, generator=replay)
                    out["pipeline_step_noise"] = torch.stack([randn_tensor(shape, generator=replay)
                                                              for t in pipeline.scheduler.timesteps if t > 0])
                    out["pipeline_steps"] = torch.tensor([steps])
                    out["pipeline_images"] = torch.from_numpy(images).float()
            else:
                DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
                unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet").eval()
                out["output"] = unet(inputs["sample"], inputs["timestep"], encoder_hidden_states=inputs["encoder_hidden_states"]).sample
        save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(folder, "diffusers.safetensors"))
        print(kind, {k: tuple(v.shape) for k, v in out.items()})


if __name__ == "__main__":
    main()
