"""asr: attention encoder-decoder speech recognition and speech translation."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public names, imported on first use so that `import asr` stays cheap for CLIs and workers.
_LAZY = {
    "load_audio": "asr.audio",
    "AudioError": "asr.audio",
    "FeatureConfig": "asr.features",
    "FeatureExtractor": "asr.features",
    "load_tokenizer": "asr.text",
    "read_manifest": "asr.data",
    "train_tokenizer": "asr.text",
    "load_model": "asr.model.io",
    "SpeechModel": "asr.model.io",
    "DecodeOptions": "asr.decode.options",
    "DecodeResult": "asr.decode.options",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'asr' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = sorted(_LAZY)
