"""A stand-in for transformers, which Debian 12 lacks: diffusers' Stable Diffusion pipeline module imports these names.

diffusers 0.21.4 imports, at import time of pipelines/stable_diffusion/pipeline_stable_diffusion.py:
  CLIPImageProcessor, CLIPTextModel, CLIPTokenizer          (pipeline_stable_diffusion.py)
  CLIPConfig, CLIPVisionModel, PreTrainedModel               (safety_checker.py, a base class)
Its other transformers imports (loaders.py, pipeline_utils.py) are behind is_transformers_available(), which stays
False: this package has no installed distribution metadata. The fixture script runs the pipeline with
text_encoder, tokenizer, safety_checker and feature_extractor None and gives it prompt embeddings; the classes only
exist so that the module imports, and so that instances of CLIPTextModel and CLIPTokenizer let diffusers write
["transformers", "CLIPTextModel"] / ["transformers", "CLIPTokenizer"] into model_index.json. Nothing here computes.
"""


class _Placeholder:
    def __init__(self, *args, **kwargs):
        pass


class PreTrainedModel(_Placeholder):
    pass


class CLIPConfig(_Placeholder):
    pass


class CLIPVisionModel(PreTrainedModel):
    pass


class CLIPTextModel(PreTrainedModel):
    pass


class CLIPTokenizer(_Placeholder):
    pass


class CLIPImageProcessor(_Placeholder):
    pass
