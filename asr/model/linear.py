"""nn.Linear that multiplies by a prepacked copy of its weight in CPU inference.

Decoding multiplies every decoder weight by a handful of rows a step (batch x beam hypotheses).
At such shapes MKL's GEMM is slow (5 rows by Whisper's 51,865 x 384 output projection took about
3x as long as 1 row, measured in isolation). oneDNN can lay a weight out once for the GEMM
(`mkldnn._reorder_linear_weight`) and reuse the blocked copy (`mkldnn._linear_pointwise`); these
are the ops torch.compile's CPU backend emits for the frozen linears of an inference graph. Same
results as F.linear up to float rounding (bit-identical in the cases measured at a few rows).
Beam-5 decoding of Whisper-tiny (bench/whisper_compare.py) is ~11 % faster in float32 (the output
projection) and ~20 % in bfloat16 (every weight), as README says.

The packed copy is made on the first call without gradients in eval mode and reused while the
weight is the same tensor, unchanged (in-place updates bump its version); `train()`, `.to()` and
`load_state_dict` drop it. The cost is memory: in inference the packed weights are held twice
(Whisper-tiny in bfloat16: 73 MB more); `torch.backends.mkldnn.enabled = False`, set before
decoding, avoids that (and oneDNN's other kernels). Everything else takes F.linear: training,
autograd, autocast, non-CPU devices, other dtypes, and builds without oneDNN (the ops are internal:
they are probed once).

At a few rows a GEMM costs mostly its fixed overhead (~30 us here), so two helpers save calls:
`fused_linear` runs several projections of one input (the self-attention's q/k/v in a decoding
step) as one GEMM by their concatenated weights, and `Linear.activated` lets the GEMM apply
ReLU/GELU/SiLU itself (oneDNN post-ops).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

# Measured to pay on this project's CPUs; float16 on CPUs without AMX-FP16 is slow either way.
PACKED_DTYPES = (torch.float32, torch.bfloat16)

# float32 weights under 4 MB (the L2 cache of this project's CPUs) multiply as fast or faster with MKL's
# sgemm: at 5 rows, 384 x 384 took 1.1x as long packed, 2048 x 512 1.02x, 3072 x 768 0.84x, the
# 51,865 x 384 Whisper output projection 0.58x. bfloat16 gained at every size (0.54-0.82x).
FLOAT32_MIN_PACKED = 1 << 20

_packing_works: dict[torch.dtype, bool] = {}

Versions = tuple[tuple[int, int], ...]  # (data pointer, version counter) of each tensor a copy was made from
NO_POST_OP = ("none", [], "")


def packing_available(dtype: torch.dtype) -> bool:
    """Whether this torch build can prepack CPU linear weights of `dtype` (probed once per dtype)."""
    if dtype not in _packing_works:
        _packing_works[dtype] = dtype in PACKED_DTYPES and _probe(dtype)
    return _packing_works[dtype]


def _probe(dtype: torch.dtype) -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    weight = torch.arange(6, dtype=dtype).reshape(3, 2)
    x = torch.ones(1, 2, dtype=dtype)
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, None)
        y = torch.ops.mkldnn._linear_pointwise(x, packed, None, *NO_POST_OP)
    except (AttributeError, RuntimeError) as error:
        log.debug("prepacked linear weights unavailable for %s: %s", dtype, error)
        return False
    return torch.equal(y, F.linear(x, weight))


class Linear(nn.Linear):
    """nn.Linear (same parameters, same state dict) with prepacked weights in CPU inference."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._packed: tuple[Versions, Tensor | None] | None = None
        self._fused: tuple[Versions, Tensor, Tensor] | None = None  # fused_linear's

    def forward(self, x: Tensor) -> Tensor:
        out = self._packed_call(x, NO_POST_OP)
        return F.linear(x, self.weight, self.bias) if out is None else out

    def activated(self, x: Tensor, activation: nn.Module) -> Tensor:
        """activation(self(x)), the activation applied by the packed GEMM itself where oneDNN has it
        (one pass over the output fewer; in bfloat16 applied before rounding, so more exact)."""
        post_op = _post_op(activation)
        out = None if post_op is None else self._packed_call(x, post_op)
        return activation(self(x)) if out is None else out  # self(x): through the module's hooks

    def _packed_call(self, x: Tensor, post_op: tuple[str, list, str]) -> Tensor | None:
        """The packed GEMM (then post_op), or None where F.linear serves."""
        if not self.packs(x):
            return None
        try:
            packed = self._packed_weight(self.weight)
            if packed is not None:
                return torch.ops.mkldnn._linear_pointwise(x, packed, self.bias, *post_op)
        except RuntimeError as error:
            _packing_failed(x.dtype, error)
        return None

    def packs(self, x: Tensor) -> bool:
        """Whether this call is CPU inference that packed weights serve (else F.linear)."""
        return not (torch.is_grad_enabled() or self.training or not x.is_cpu or x.dtype != self.weight.dtype
                    or x.size(-1) != self.in_features  # F.linear's own error message
                    or torch.is_autocast_enabled("cpu") or not torch.backends.mkldnn.enabled
                    or not packing_available(x.dtype))

    def _packed_weight(self, weight: Tensor) -> Tensor | None:
        """The packed copy of `weight`, made again if it changed in place; None where F.linear is as fast
        (small float32 weights) or packing cannot see changes (inference tensors)."""
        key = _versions([weight])
        if key is None:
            return None
        cached = self._packed  # read once: another thread may replace it meanwhile
        if cached is not None and cached[0] == key:
            return cached[1]
        self._packed = None  # free the old copy before making the new one
        worth_it = _worth_packing(weight.dtype, weight.numel())
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None) if worth_it else None
        self._packed = key, packed
        return packed

    # A conversion (.to) swaps the weight's data but keeps its version counter, and the new data may
    # reuse the old address: the key cannot tell, so these drop the copy outright.
    def train(self, mode: bool = True) -> Linear:
        if mode:
            self._drop_copies()
        return super().train(mode)

    def _apply(self, fn: Any, recurse: bool = True) -> Linear:
        self._drop_copies()
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._drop_copies()
        super()._load_from_state_dict(*args, **kwargs)

    def _drop_copies(self) -> None:
        self._packed = self._fused = None

    def __getstate__(self) -> dict[str, Any]:
        # The packed copies are opaque oneDNN tensors: they cannot be copied or pickled (deepcopy of a model).
        return {**self.__dict__, "_packed": None, "_fused": None}


def fused_linear(x: Tensor, linears: Sequence[Linear]) -> tuple[Tensor, ...]:
    """(linear(x) for linear in linears), as one GEMM by their concatenated weights in CPU inference.

    For the few rows of a decoding step a GEMM costs mostly its fixed overhead (~30 us on this
    project's CPUs whatever the size up to 384 x 1152), so the self-attention's query, key and
    value projections cost one call instead of three (packed, so float32 only from FLOAT32_MIN_PACKED
    elements of weights). The packed concatenation lives on linears[0] (dropped with its packed
    copy; remade when any weight or bias changes in place). The linears must take the same input
    size; elsewhere (training, autograd, ...) they are called one by one.
    """
    first = linears[0]
    weight_size = sum(linear.out_features for linear in linears) * first.in_features
    # Mixed dtypes get each call's own error. Small float32 weights are not packed, and MKL's GEMM
    # by their concatenation was slower than separate calls (Whisper-tiny beam 5: 1.06x).
    if (not first.packs(x) or any(linear.weight.dtype != x.dtype for linear in linears[1:])
            or not _worth_packing(x.dtype, weight_size)):
        return tuple(linear(x) for linear in linears)
    key = _versions([p for linear in linears for p in (linear.weight, linear.bias) if p is not None])
    if key is None:
        return tuple(linear(x) for linear in linears)
    cached = first._fused
    if cached is None or cached[0] != key:
        first._fused = None
        weight = torch.cat([linear.weight.detach() for linear in linears])
        bias = torch.cat([linear.bias.detach() if linear.bias is not None
                          else linear.weight.new_zeros(linear.out_features) for linear in linears])
        cached = first._fused = key, bias, torch.ops.mkldnn._reorder_linear_weight(weight, None)
    _, bias, packed = cached
    try:
        out = torch.ops.mkldnn._linear_pointwise(x, packed, bias, *NO_POST_OP)
    except RuntimeError as error:
        _packing_failed(x.dtype, error)
        return tuple(linear(x) for linear in linears)
    return out.split([linear.out_features for linear in linears], dim=-1)


def _versions(tensors: Sequence[Tensor]) -> Versions | None:
    """What tells whether tensors changed since a copy was made of them; None for tensors made in
    inference mode, which have no version counter (their changes would go unseen: no copy)."""
    try:
        return tuple((t.data_ptr(), t._version) for t in tensors)
    except RuntimeError:
        return None


def _worth_packing(dtype: torch.dtype, weight_size: int) -> bool:
    """Whether a packed copy of a weight of `weight_size` elements is faster than F.linear."""
    return dtype != torch.float32 or weight_size >= FLOAT32_MIN_PACKED


def _post_op(activation: nn.Module) -> tuple[str, list, str] | None:
    """oneDNN's post-op (name, scalars, algorithm) for an activation module, or None."""
    if type(activation) is nn.ReLU:
        return "relu", [], ""
    if type(activation) is nn.GELU:
        return "gelu", [], activation.approximate  # "none" (erf) or "tanh"
    if type(activation) is nn.SiLU:
        return "swish", [], ""
    return None


def _packing_failed(dtype: torch.dtype, error: RuntimeError) -> None:
    # The probe passed, yet this call failed (a case oneDNN does not support here): stop packing
    # this dtype, once and for all, rather than fail or warn at every step.
    _packing_works[dtype] = False
    log.warning("asr: prepacked %s linear weights failed (%s); using F.linear", dtype, error)
