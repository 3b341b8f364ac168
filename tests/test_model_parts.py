"""Model building blocks: config, subsampling, positions, attention, CTC head and losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from asr.features import SpecAugmentConfig
from asr.model import (
    CTC,
    SUBSAMPLING,
    DecoderConfig,
    EncoderConfig,
    ModelConfig,
    MultiHeadAttention,
    SinusoidalPositionalEncoding,
    label_smoothed_nll,
    token_accuracy,
)
from asr.model import config as model_config

# ---------------------------------------------------------------- config


def test_config_round_trip_and_defaults():
    config = ModelConfig(vocab_size=50, encoder=EncoderConfig(d_model=64, n_heads=2), specaug=None)
    d = config.to_dict()
    assert d["encoder"]["d_model"] == 64 and d["specaug"] is None and d["decoder"]["n_layers"] == 6
    assert ModelConfig.from_dict(d) == config
    with_specaug = ModelConfig(vocab_size=50, specaug=SpecAugmentConfig(freq_masks=1))
    assert ModelConfig.from_dict(with_specaug.to_dict()) == with_specaug
    assert ModelConfig(vocab_size=50).ctc_weight == 0.3 and ModelConfig(vocab_size=50).encoder.n_layers == 12


@pytest.mark.parametrize(
    "values, message",
    [
        ({"vocab_size": 9, "ctc_weigth": 0.5}, "ModelConfig: unknown key 'ctc_weigth'"),
        ({"vocab_size": 9, "encoder": {"n_layer": 2}}, "ModelConfig.encoder: unknown key 'n_layer'"),
        ({"vocab_size": 9, "decoder": {"tie_embedding": True}}, "ModelConfig.decoder: unknown key 'tie_embedding'"),
        ({"vocab_size": 9, "specaug": {"freq_mask": 1}}, "ModelConfig.specaug: unknown key 'freq_mask'"),
        ({"input_dim": 80}, "vocab_size"),
        ({"vocab_size": "9"}, "ModelConfig.vocab_size: expected int, got '9'"),
        ({"vocab_size": 9, "encoder": {"normalize_before": 1}}, "EncoderConfig.normalize_before: expected bool"),
        ({"vocab_size": 9, "encoder": {"d_model": 30, "n_heads": 4}}, "multiple of n_heads=4"),
        ({"vocab_size": 9, "decoder": {"dropout": 1.0}}, "DecoderConfig.dropout"),
        ({"vocab_size": 9, "ctc_weight": 1.5}, "ModelConfig.ctc_weight"),
        ({"vocab_size": 4}, "ModelConfig.vocab_size"),
        ({"vocab_size": 9, "encoder": [1, 2]}, "ModelConfig.encoder: expected EncoderConfig"),
    ],
)
def test_config_from_dict_rejects_bad_input(values, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ModelConfig.from_dict(values)


def test_config_unknown_key_error_lists_valid_keys():
    with pytest.raises(ValueError, match="valid keys are kind, d_model"):
        EncoderConfig.from_dict({"dmodel": 3})
    assert DecoderConfig.from_dict({"n_layers": 2}).n_layers == 2
    assert EncoderConfig(dropout=0).dropout == 0  # ints are fine for floats


def test_special_ids_match_tokenizers():
    from asr.text import SPECIAL_TOKENS as tokens

    assert [tokens.index(t) for t in ("<blank>", "<sos>", "<eos>", "<pad>")] == [
        model_config.BLANK_ID, model_config.SOS_ID, model_config.EOS_ID, model_config.PAD_ID]


# ---------------------------------------------------------------- subsampling


@pytest.mark.parametrize("name, rate, min_len",
                         [("conv2d2", 2, 7), ("conv2d4", 4, 7), ("conv2d6", 6, 11), ("conv2d8", 8, 15)])
def test_subsampling_output_lengths_are_exact(name, rate, min_len):
    torch.manual_seed(0)
    sub = SUBSAMPLING[name](input_dim=20, d_model=16, channels=4).eval()
    assert sub.rate == rate and sub.min_input_length == min_len
    lengths = torch.arange(0, 90)
    predicted = sub.output_lengths(lengths)
    assert predicted[min_len - 1] == 0 and predicted[min_len] == 1 and bool((predicted[:min_len] == 0).all())
    with torch.no_grad():
        for length in range(min_len, 90):
            out, out_lengths = sub(torch.randn(1, length, 20), torch.tensor([length]))
            assert out.shape == (1, int(predicted[length]), 16), (name, length)
            assert int(out_lengths[0]) == out.size(1)
    # About T / rate frames out, as the name promises: the convolutions' edges cost under min_len / rate.
    assert abs(int(sub.output_lengths(torch.tensor([1000]))) - 1000 / rate) <= min_len / rate


def test_subsampling_errors():
    sub = SUBSAMPLING["conv2d4"](input_dim=20, d_model=16, channels=4)
    with pytest.raises(ValueError, match="needs at least 7 frames, got a batch of 6"):
        sub(torch.randn(2, 6, 20), torch.tensor([6, 5]))
    with pytest.raises(ValueError, match="input_dim=6 is too small"):
        SUBSAMPLING["conv2d8"](input_dim=6, d_model=16)
    assert SUBSAMPLING["conv2d6"](input_dim=20, d_model=16).conv[0].out_channels == 16  # channels 0 = d_model


# ---------------------------------------------------------------- positions


def test_sinusoidal_positions_values_offset_and_growth():
    pe = SinusoidalPositionalEncoding(8, dropout=0.0, max_len=10)
    table = pe.encoding(0, 4)
    assert torch.allclose(table[:, 0], torch.sin(torch.arange(4.0)))
    assert torch.allclose(table[:, 1], torch.cos(torch.arange(4.0)))
    assert torch.allclose(table[3, 6], torch.tensor(math.sin(3 / 10000 ** (6 / 8))))
    x = torch.randn(2, 25, 8)  # longer than max_len: the table grows
    full = pe(x)
    assert torch.allclose(full, x * math.sqrt(8) + pe.encoding(0, 25))
    assert torch.allclose(pe(x[:, 17:19], offset=17), full[:, 17:19])
    assert "table" not in pe.state_dict()


# ---------------------------------------------------------------- attention


def test_attention_mask_cache_and_weights():
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 4, kv_dim=12).eval()
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 12)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])[:, None, None, :]
    out = attn(x, memory, mask)
    changed = memory.clone()
    changed[1, 4:] = 100.0  # masked frames cannot matter
    assert torch.allclose(attn(x, changed, mask), out, atol=1e-6)
    weights = attn.weights(x, attn.project_kv(memory)[0], mask)
    assert weights.shape == (2, 4, 5, 7) and torch.allclose(weights.sum(-1), torch.ones(2, 4, 5))
    assert bool((weights[1, :, :, 4:] == 0).all())
    # The weights are those the fused kernel uses.
    value = attn.project_kv(memory)[1]
    merged = (weights @ value).transpose(1, 2).reshape(2, 5, 16)
    assert torch.allclose(attn.out(merged), out, atol=1e-5)

    self_attn = MultiHeadAttention(16, 4).eval()
    causal = self_attn(x, is_causal=True)
    keys = values = torch.zeros(2, 4, 0, 4)
    for t in range(5):
        step_out, keys, values = self_attn.step(x[:, t : t + 1], keys, values)
        assert torch.allclose(step_out[:, 0], causal[:, t], atol=1e-5)
    assert keys.shape == (2, 4, 5, 4)


# ---------------------------------------------------------------- CTC


def test_ctc_loss_finite_and_decreasing():
    torch.manual_seed(0)
    ctc = CTC(8, 6)
    enc = torch.randn(3, 12, 8, requires_grad=True)
    enc_lengths = torch.tensor([12, 9, 5])
    targets = torch.tensor([[1, 2, 3, 4], [5, 5, -1, -1], [2, -1, -1, -1]])
    target_lengths = torch.tensor([4, 2, 1])
    log_probs = ctc.log_probs(enc)
    assert log_probs.shape == (3, 12, 6) and torch.allclose(log_probs.exp().sum(-1), torch.ones(3, 12))
    expected = F.ctc_loss(log_probs.transpose(0, 1), targets.clamp(min=0), enc_lengths, target_lengths,
                          reduction="sum") / 3
    optimizer = torch.optim.Adam([enc, *ctc.parameters()], lr=0.05)
    losses = []
    for _ in range(20):
        loss = ctc.loss(enc, enc_lengths, targets, target_lengths)
        if not losses:
            assert torch.allclose(loss, expected)
        losses.append(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.3 * losses[0]
    # Targets that cannot fit in the frames contribute 0 instead of inf.
    impossible = ctc.loss(enc[:1, :2], torch.tensor([2]), targets[:1], target_lengths[:1])
    assert float(impossible.detach()) == 0.0


# ---------------------------------------------------------------- losses


def test_label_smoothing_hand_example():
    # One utterance, two real tokens and one ignored position; V = 3.
    logits = torch.log(torch.tensor([[[0.25, 0.5, 0.25], [0.1, 0.2, 0.7], [0.9, 0.05, 0.05]]]))
    targets = torch.tensor([[1, 0, -1]])
    eps = 0.3
    tok1 = (1 - eps) * -math.log(0.5) + eps * -(math.log(0.25) + math.log(0.5) + math.log(0.25)) / 3
    tok2 = (1 - eps) * -math.log(0.1) + eps * -(math.log(0.1) + math.log(0.2) + math.log(0.7)) / 3
    assert label_smoothed_nll(logits, targets, eps).item() == pytest.approx((tok1 + tok2) / 2, rel=1e-5)
    assert label_smoothed_nll(logits, targets).item() == pytest.approx((-math.log(0.5) - math.log(0.1)) / 2,
                                                                       rel=1e-5)
    assert token_accuracy(logits, targets).item() == pytest.approx(0.5)
    assert label_smoothed_nll(logits, torch.full((1, 3), -1)).item() == 0.0
