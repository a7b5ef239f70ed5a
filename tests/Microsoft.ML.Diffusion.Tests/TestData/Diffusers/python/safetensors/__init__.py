"""A small safetensors reader and writer for the fixture script (Debian 12 has no python3-safetensors).

The format: an 8-byte little-endian header length, a JSON header mapping each tensor name to its dtype, shape and
byte range in the data that follows (and an optional "__metadata__" of strings), then the raw little-endian bytes.
"""
from . import torch  # noqa: F401  (diffusers uses safetensors.torch after 'import safetensors')
