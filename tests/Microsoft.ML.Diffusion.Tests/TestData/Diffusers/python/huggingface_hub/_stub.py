# A stand-in for huggingface_hub: diffusers' model and scheduler code imports these names but never calls them offline.
import os, re

def make(name):
    if name.endswith("Error") or name.endswith("Exception"):
        return type(name, (Exception,), {})
    if name.isupper():
        return {"REGEX_COMMIT_HASH": re.compile(r"^[0-9a-f]{40}$")}.get(name, os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub"))
    if name[:1].isupper():
        return type(name, (), {"__init__": lambda self, *a, **k: None})
    def offline(*args, **kwargs):
        raise RuntimeError(f"huggingface_hub.{name} is not available offline")
    offline.__name__ = name
    return offline
