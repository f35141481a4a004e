__version__ = "0.1.0"

def load(path, expect=None, map_location='cpu'):
    "Any prod9 export, checkpoint or token cache, by what the file says it is (`prod9.loader.load`: strict, safe, wrong kinds refused)."
    from .loader import load as _load
    return _load(path, expect, map_location)
