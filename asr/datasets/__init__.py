"""Built-in corpora. `synth`: voice-assistant requests spoken by eSpeak NG, with German translations.

    from asr.datasets import prepare_synth
    manifests = prepare_synth("data/synth", num_train=3000, seed=0)   # {"train": Path, "dev": ..., "test": ...}

Names are imported on first use: the synth worker processes import asr.datasets.synth_render,
which must not pull in torch (through asr.data) just because this package is its parent.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AugmentConfig": "asr.datasets.augment",
    "Espeak": "asr.datasets.espeak",
    "EspeakError": "asr.datasets.espeak",
    "get_engine": "asr.datasets.espeak",
    "prepare_synth": "asr.datasets.synth",
    "synthesize_pairs": "asr.datasets.synth",
    "prepare_freedict": "asr.datasets.freedict",
    "PATTERNS": "asr.datasets.synth_grammar",
    "SentencePair": "asr.datasets.synth_grammar",
    "generate_pairs": "asr.datasets.synth_grammar",
    "sentence_split": "asr.datasets.synth_grammar",
    "split_pairs": "asr.datasets.synth_grammar",
    "Speaker": "asr.datasets.synth_voices",
    "speakers": "asr.datasets.synth_voices",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'asr.datasets' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = sorted(_LAZY)
