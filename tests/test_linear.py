"""asr.model.linear.Linear: prepacked CPU inference weights that always give F.linear's results."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from asr.model.linear import FLOAT32_MIN_PACKED, Linear, fused_linear, packing_available

needs_packing = pytest.mark.skipif(not packing_available(torch.bfloat16), reason="this torch build has no oneDNN")


def make(in_features: int = 48, out_features: int = 40, dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> Linear:
    torch.manual_seed(seed)
    return Linear(in_features, out_features).to(dtype).eval()


def reference(layer: Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, layer.weight.detach(), layer.bias.detach())


def assert_matches(layer: Linear, x: torch.Tensor) -> None:
    with torch.no_grad():
        out = layer(x)
    torch.testing.assert_close(out, reference(layer, x))


@needs_packing
@pytest.mark.parametrize("shape", [(1, 48), (5, 48), (5, 1, 48), (2, 7, 48), (0, 48)])
def test_packed_output_equals_f_linear(shape):
    layer = make()
    x = torch.randn(*shape, dtype=torch.bfloat16)
    assert_matches(layer, x)
    if x.numel():
        assert layer._packed is not None and layer._packed[1] is not None, "bfloat16 weights are packed"


@needs_packing
def test_float32_packs_only_large_weights():
    small = make(48, 40, torch.float32)
    large = make(256, FLOAT32_MIN_PACKED // 256, torch.float32)
    for layer in (small, large):
        assert_matches(layer, torch.randn(5, 1, layer.in_features))
    assert small._packed[1] is None
    assert large._packed[1] is not None


@needs_packing
def test_weight_changes_are_seen():
    layer = make()
    x = torch.randn(5, 48, dtype=torch.bfloat16)
    assert_matches(layer, x)
    with torch.no_grad():
        layer.weight.mul_(-2.0)  # in place: same storage, new version
    assert_matches(layer, x)
    layer.load_state_dict(make(seed=1).state_dict())
    assert_matches(layer, x)
    layer.train()
    assert layer._packed is None, "train() frees the packed copy"


@needs_packing
def test_dtype_round_trip_is_seen():
    # .to() swaps the parameter's data but keeps its version counter (the rounded weight is only
    # told apart by its address, which the allocator may reuse; _apply drops the copy for that).
    layer = make(256, FLOAT32_MIN_PACKED // 256, torch.float32)
    x = torch.randn(5, 256)
    for _ in range(3):
        with torch.no_grad():
            layer.weight.add_(1e-3)  # values bfloat16 cannot hold, which the round trip rounds
        assert_matches(layer, x)
        layer.to(torch.bfloat16).float()
        assert_matches(layer, x)
    layer.weight.data = torch.rand_like(layer.weight) / 16  # also keeps the version counter
    assert_matches(layer, x)


@needs_packing
def test_training_autograd_and_autocast_take_f_linear():
    layer = make(dtype=torch.float32)
    x = torch.randn(3, 48)
    out = layer(x)  # eval mode, but gradients enabled: autograd must see the weight
    out.sum().backward()
    assert layer.weight.grad is not None and layer._packed is None
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
    layer.train()
    with torch.no_grad():
        assert_matches(layer, x)
    assert layer._packed is None


@needs_packing
def test_wrong_input_size_is_f_linear_error():
    layer = make()
    with torch.no_grad(), pytest.raises(RuntimeError, match="cannot be multiplied"):
        layer(torch.randn(5, 47, dtype=torch.bfloat16))
    assert packing_available(torch.bfloat16)


@needs_packing
def test_disabling_onednn_turns_packing_off():
    layer = make()
    x = torch.randn(5, 48, dtype=torch.bfloat16)
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # what a user short of memory sets before decoding
    try:
        assert_matches(layer, x)
        assert layer._packed is None
    finally:
        torch.backends.mkldnn.enabled = enabled
    assert_matches(layer, x)
    assert layer._packed is not None


@needs_packing
def test_packed_layer_can_be_copied():
    layer = make()
    x = torch.randn(5, 48, dtype=torch.bfloat16)
    assert_matches(layer, x)
    clone = copy.deepcopy(layer)  # the oneDNN copy itself cannot be copied: it is dropped and remade
    assert_matches(clone, x)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), layer(x))


def test_inference_mode_weights_take_f_linear():
    with torch.inference_mode():
        layer = make()
        x = torch.randn(5, 48, dtype=torch.bfloat16)
        torch.testing.assert_close(layer(x), reference(layer, x))


def qkv(dtype: torch.dtype, out_features: int = 48) -> tuple[Linear, Linear, Linear]:
    """Three projections of one input, the middle one without bias (as Whisper's key)."""
    torch.manual_seed(0)
    return tuple(Linear(48, out_features, bias=bias).to(dtype).eval() for bias in (True, False, True))


@needs_packing
@pytest.mark.parametrize(("dtype", "out_features", "fused"), [(torch.bfloat16, 48, True), (torch.float32, 48, False),
                                                              (torch.float32, 8192, True)])
def test_fused_linear_equals_separate_calls(dtype, out_features, fused):
    linears = qkv(dtype, out_features)
    x = torch.randn(5, 1, 48, dtype=dtype)
    with torch.no_grad():
        before = fused_linear(x, linears)
        assert (linears[0]._fused is not None) == fused, "packed weights: one GEMM; small float32 ones: three"
        copy.deepcopy(linears[0])  # the opaque packed copy is left out
        linears[1].weight.mul_(-2.0)  # in place: the concatenated copy must follow
        after = fused_linear(x, linears)
    for out, linear in zip(after, linears):
        assert out.shape == (5, 1, out_features)
        torch.testing.assert_close(out, F.linear(x, linear.weight.detach(),
                                                 None if linear.bias is None else linear.bias.detach()))
    torch.testing.assert_close(before[0], after[0])
    assert not torch.equal(before[1], after[1])


@needs_packing
def test_fused_linear_trains_through_each_linear():
    linears = qkv(torch.float32)
    for linear in linears:
        linear.train()
    x = torch.randn(3, 48)
    sum(out.sum() for out in fused_linear(x, linears)).backward()
    assert all(linear.weight.grad is not None for linear in linears)
    assert linears[0]._fused is None


@needs_packing
@pytest.mark.parametrize(("activation", "fused"), [(torch.nn.ReLU(), True), (torch.nn.GELU(), True),
                                                  (torch.nn.GELU(approximate="tanh"), True), (torch.nn.SiLU(), True),
                                                  (torch.nn.Tanh(), False)])
def test_activation_applied_by_the_gemm_equals_applied_after(activation, fused):
    layer = make(48, 1 << 15)  # bfloat16
    x = torch.randn(5, 1, 48, dtype=torch.bfloat16)
    with torch.no_grad():
        out = layer.activated(x, activation)
    if fused:  # applied before rounding to bfloat16: as exact as rounding the exact result
        exact = activation(F.linear(x.float(), layer.weight.float(), layer.bias.float()))
        torch.testing.assert_close(out.float(), exact, atol=0, rtol=2**-8)
    else:  # oneDNN has no such post-op: applied after
        torch.testing.assert_close(out, activation(reference(layer, x)))
    torch.testing.assert_close(layer.train().activated(x, activation), activation(reference(layer, x)))
