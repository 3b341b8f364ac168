"""Reading other toolkits' checkpoints safely, and mapping their parameter names onto ours.

Nothing here unpickles objects: PyTorch files are read with weights_only=True (asr.fileio.load_tensors)
and safetensors files are parsed directly (the format is a JSON header and raw little-endian data),
so importing a transformers model does not need the `safetensors` package.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from asr.fileio import load_tensors

SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
# transformers' weight files, in the order they are looked for.
HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "pytorch_model.bin.index.json")


def read_safetensors(path: str | os.PathLike) -> dict[str, Tensor]:
    """All tensors of a .safetensors file (they share one buffer with the file's contents)."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    try:
        (header_len,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a safetensors file ({error})") from None
    start = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = SAFETENSORS_DTYPES[info["dtype"]]
            begin, end = info["data_offsets"]
            shape = [int(n) for n in info["shape"]]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: tensor {name!r}: unsupported or malformed header entry {info!r}") from None
        count = (end - begin) // torch.empty(0, dtype=dtype).element_size()
        if start + end > len(data) or count != int(torch.tensor(shape).prod()):
            raise ValueError(f"{path}: tensor {name!r}: data offsets {begin}..{end} do not fit shape {shape}")
        tensor = torch.frombuffer(data, dtype=dtype, count=count, offset=start + begin) if count else \
            torch.empty(0, dtype=dtype)
        tensors[name] = tensor.reshape(shape)
    return tensors


def read_weights(path: Path) -> dict[str, Tensor]:
    """A state dict from a .safetensors, a PyTorch .bin/.pt, or a transformers shard index (.index.json)."""
    if path.name.endswith(".index.json"):
        try:
            shards = sorted(set(json.loads(path.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as error:
            raise ValueError(f"{path}: not a shard index with a 'weight_map' ({error})") from None
        state: dict[str, Tensor] = {}
        for shard in shards:
            state.update(read_weights(path.parent / shard))
        return state
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    state = load_tensors(path)
    if not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors")
    return state


def read_hf_dir(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """config.json and the weights of a transformers model directory (save_pretrained)."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: no such file; is {directory} a transformers model directory?")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{config_path}: not valid JSON ({error})") from None
    for name in HF_WEIGHT_FILES:
        if (directory / name).is_file():
            return config, read_weights(directory / name)
    raise FileNotFoundError(f"{directory}: no weights ({', '.join(HF_WEIGHT_FILES)})")


def bart_style_rules(prefix: str = r"model\.") -> list[tuple[str, str | None]]:
    """Renaming rules for the transformer layers of transformers' BART-style speech models (Whisper,
    Speech2Text): q/k/v/out_proj, self_attn/encoder_attn(_layer_norm), fc1/fc2, final_layer_norm,
    layer_norm, embed_tokens."""
    rules: list[tuple[str, str | None]] = []
    for theirs, ours in (("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value"), ("out_proj", "out")):
        rules += [(rf"{prefix}(encoder|decoder)\.layers\.(\d+)\.self_attn\.{theirs}\.(weight|bias)",
                   rf"\1.layers.\2.self_attn.{ours}.\3"),
                  (rf"{prefix}decoder\.layers\.(\d+)\.encoder_attn\.{theirs}\.(weight|bias)",
                   rf"decoder.layers.\1.cross_attn.{ours}.\2")]
    return rules + [
        (rf"{prefix}encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.attn_norm.\2"),
        (rf"{prefix}decoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"decoder.layers.\1.self_norm.\2"),
        (rf"{prefix}decoder\.layers\.(\d+)\.encoder_attn_layer_norm\.(weight|bias)",
         r"decoder.layers.\1.cross_norm.\2"),
        (rf"{prefix}(encoder|decoder)\.layers\.(\d+)\.fc1\.(weight|bias)", r"\1.layers.\2.ffn.net.0.\3"),
        (rf"{prefix}(encoder|decoder)\.layers\.(\d+)\.fc2\.(weight|bias)", r"\1.layers.\2.ffn.net.3.\3"),
        (rf"{prefix}(encoder|decoder)\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"\1.layers.\2.ffn_norm.\3"),
        (rf"{prefix}(encoder|decoder)\.layer_norm\.(weight|bias)", r"\1.final_norm.\2"),
        (rf"{prefix}decoder\.embed_tokens\.weight", "decoder.embed.weight"),
    ]


def rename(state: Mapping[str, Tensor], rules: Sequence[tuple[str, str | None]], source: str) -> dict[str, Tensor]:
    """Map parameter names with (regex, replacement) rules, the first full match winning; a None
    replacement drops the tensor. A name no rule matches is an error naming `source`."""
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]
    renamed: dict[str, Tensor] = {}
    unknown = []
    for name, tensor in state.items():
        for pattern, replacement in compiled:
            if pattern.fullmatch(name):
                if replacement is not None:
                    renamed[pattern.sub(replacement, name)] = tensor
                break
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(f"{source}: unexpected parameters {unknown[:5]}{' …' if len(unknown) > 5 else ''} "
                         f"({len(unknown)}): not a checkpoint of the expected architecture")
    return renamed


def load_into(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Copy `state` into `model` (converting dtypes), or raise a ValueError naming `source` and every
    missing, unexpected or wrongly shaped parameter."""
    expected = model.state_dict()
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    wrong = [f"{name} {tuple(state[name].shape)} (expected {tuple(expected[name].shape)})"
             for name in expected if name in state and state[name].shape != expected[name].shape]
    problems = [f"{what} {names[:5]}{' …' if len(names) > 5 else ''}" for what, names in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if names]
    if problems:
        raise ValueError(f"{source}: the weights do not fit the converted model: {'; '.join(problems)}")
    model.load_state_dict(dict(state))
