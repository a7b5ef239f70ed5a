from ._stub import make as _make
hf_cache_home = _make("HF_HOME")
def __getattr__(name):
    return _make(name)
