from ._stub import make as _make
__version__ = "0.16.4"
hf_cache_home = _make("HF_HOME")
def __getattr__(name):
    return _make(name)
