"""Encoder, decoder (teacher forcing and incremental decoding) and the full ASRModel, with tiny dimensions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from asr.features import CMVNStats, SpecAugmentConfig
from asr.model import (
    EOS_ID,
    PAD_ID,
    SOS_ID,
    DecoderConfig,
    EncoderConfig,
    ModelConfig,
    TransformerDecoder,
    TransformerEncoder,
    build_model,
    decoder_io,
)

VOCAB = 12
FEAT_DIM = 16


def tiny_config(pre_ln: bool = True, **overrides) -> ModelConfig:
    values = dict(
        vocab_size=VOCAB, input_dim=FEAT_DIM,
        encoder=EncoderConfig(d_model=32, n_heads=4, n_layers=2, ffn_dim=64, dropout=0.0, subsampling_channels=8,
                              normalize_before=pre_ln),
        decoder=DecoderConfig(d_model=32, n_heads=4, n_layers=2, ffn_dim=64, dropout=0.0, normalize_before=pre_ln),
        specaug=None,
    )
    values.update(overrides)
    return ModelConfig(**values)


def make_batch(seed: int = 0, batch: int = 4, frames: int = 40, prefix_len: int = 1) -> SimpleNamespace:
    """A Batch-like object: random features, random targets padded with -1."""
    g = torch.Generator().manual_seed(seed)
    feat_lengths = torch.linspace(frames, frames * 0.6, batch).long()
    feats = torch.randn(batch, frames, FEAT_DIM, generator=g)
    feats[torch.arange(frames) >= feat_lengths[:, None]] = 0.0
    target_lengths = torch.randint(2, 6, (batch,), generator=g)
    targets = torch.randint(5, VOCAB, (batch, int(target_lengths.max())), generator=g)
    targets[torch.arange(targets.size(1)) >= target_lengths[:, None]] = -1
    prefix = torch.randint(5, 7, (batch, prefix_len), generator=g)
    return SimpleNamespace(feats=feats, feat_lengths=feat_lengths, targets=targets, target_lengths=target_lengths,
                           ctc_targets=targets, ctc_target_lengths=target_lengths, prefix=prefix)


# ---------------------------------------------------------------- encoder


@pytest.mark.parametrize("pre_ln", [True, False])
@pytest.mark.parametrize("subsampling", ["conv2d2", "conv2d4", "conv2d6", "conv2d8"])
def test_encoder_padding_invariance(pre_ln, subsampling):
    torch.manual_seed(0)
    config = EncoderConfig(d_model=32, n_heads=4, n_layers=2, ffn_dim=64, subsampling=subsampling,
                           subsampling_channels=8, normalize_before=pre_ln)
    encoder = TransformerEncoder(FEAT_DIM, config).eval()
    feats = torch.randn(1, 37, FEAT_DIM)
    alone, alone_lengths = encoder(feats, torch.tensor([37]))
    # The same utterance next to a longer one, its padding filled with garbage.
    padded = torch.cat([feats, 50 * torch.randn(1, 30, FEAT_DIM)], dim=1)
    batch = torch.cat([padded, torch.randn(1, 67, FEAT_DIM)])
    together, lengths = encoder(batch, torch.tensor([37, 67]))
    n = int(alone_lengths[0])
    assert alone.shape == (1, n, 32) and int(lengths[0]) == n and together.size(1) == int(lengths[1])
    assert torch.allclose(together[0, :n], alone[0], atol=1e-5)
    assert torch.isfinite(together).all()


def test_encoder_too_short_utterance_in_batch_stays_finite():
    model = build_model(tiny_config())
    batch = make_batch()
    batch.feat_lengths[-1] = 5  # fewer frames than conv2d4 needs: 0 encoder frames
    out = model(batch)
    assert model.encoder.min_input_length == 7
    assert all(torch.isfinite(v) for v in out.values())


# ---------------------------------------------------------------- decoder


def tiny_decoder(pre_ln: bool = True, enc_dim: int = 24) -> TransformerDecoder:
    torch.manual_seed(0)
    config = DecoderConfig(d_model=32, n_heads=4, n_layers=2, ffn_dim=64, normalize_before=pre_ln)
    return TransformerDecoder(VOCAB, enc_dim, config).eval()


def test_decoder_is_causal():
    decoder = tiny_decoder()
    enc, enc_lengths = torch.randn(2, 9, 24), torch.tensor([9, 6])
    tokens = torch.randint(0, VOCAB, (2, 7))
    logits = decoder(tokens, enc, enc_lengths)
    changed = tokens.clone()
    changed[:, 4] = (changed[:, 4] + 1) % VOCAB
    other = decoder(changed, enc, enc_lengths)
    assert logits.shape == (2, 7, VOCAB)
    assert torch.allclose(other[:, :4], logits[:, :4], atol=1e-6)
    assert not torch.allclose(other[:, 4:], logits[:, 4:])
    # Encoder padding is masked in cross-attention.
    garbage = enc.clone()
    garbage[1, 6:] = 100.0
    assert torch.allclose(decoder(tokens, garbage, enc_lengths), logits, atol=1e-5)


def run_steps(decoder: TransformerDecoder, tokens: torch.Tensor, state):
    """Feed tokens (N, U) one column at a time -> (logits (N, U, V), state)."""
    logits = []
    for t in range(tokens.size(1)):
        step_logits, state = decoder.step(tokens[:, t], state)
        logits.append(step_logits)
    return torch.stack(logits, dim=1), state


@pytest.mark.parametrize("pre_ln", [True, False])
def test_incremental_decoding_matches_teacher_forcing(pre_ln):
    decoder = tiny_decoder(pre_ln)
    enc, enc_lengths = torch.randn(3, 11, 24), torch.tensor([11, 7, 3])
    tokens = torch.randint(0, VOCAB, (3, 8))
    expected = decoder(tokens, enc, enc_lengths)
    state = decoder.init_state(enc, enc_lengths)
    assert state.offset == 0 and state.cross_keys[0].shape == (3, 4, 11, 8)
    logits, state = run_steps(decoder, tokens, state)
    assert torch.allclose(logits, expected, atol=1e-5)
    assert state.offset == 8 and len(state.self_keys) == 2 and state.self_keys[1].shape == (3, 4, 8, 8)


def test_reorder_state_expand_and_permute():
    decoder = tiny_decoder()
    enc, enc_lengths = torch.randn(2, 10, 24), torch.tensor([10, 4])
    tokens = torch.randint(0, VOCAB, (2, 6))
    beam = 3
    # Expand 2 utterances to 2 x 3 hypotheses, as a beam search does after the first step.
    state = decoder.init_state(enc, enc_lengths)
    _, state = run_steps(decoder, tokens[:, :2], state)
    expand = torch.arange(2).repeat_interleave(beam)
    state = decoder.reorder_state(state, expand)
    assert state.enc_mask.shape == (6, 1, 1, 10) and state.offset == 2
    hyps = tokens[expand].clone()
    hyps[:, 2:] = torch.randint(0, VOCAB, (6, 4))  # each hypothesis continues differently
    logits, state = run_steps(decoder, hyps[:, 2:4], state)
    full = decoder(hyps, enc[expand], enc_lengths[expand])
    assert torch.allclose(logits, full[:, 2:4], atol=1e-5)
    # Beam pruning: keep hypotheses in a new order, with one duplicated and one dropped.
    keep = torch.tensor([5, 0, 0, 3, 1, 2])
    state = decoder.reorder_state(state, keep)
    logits, _ = run_steps(decoder, hyps[keep, 4:], state)
    full = decoder(hyps[keep], enc[expand][keep], enc_lengths[expand][keep])
    assert torch.allclose(logits, full[:, 4:], atol=1e-5)


def test_tied_and_untied_embeddings():
    tied = tiny_decoder()
    assert tied.output.weight is tied.embed.weight
    assert tied.output.weight.data_ptr() == tied.embed.weight.data_ptr()
    untied = TransformerDecoder(VOCAB, 24, DecoderConfig(d_model=32, n_heads=4, n_layers=2, ffn_dim=64,
                                                         tie_embeddings=False))
    assert untied.output.weight.data_ptr() != untied.embed.weight.data_ptr()
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(untied) == count(tied) + VOCAB * 32
    # Training the output projection moves the embedding too.
    before = tied.embed.weight.detach().clone()
    tied.output.weight.data.add_(1.0)
    assert torch.equal(tied.embed.weight.detach(), before + 1.0)


@pytest.mark.parametrize("pre_ln", [True, False])
def test_cross_attention_weights_for_plots(pre_ln):
    decoder = tiny_decoder(pre_ln)
    enc, enc_lengths = torch.randn(2, 9, 24), torch.tensor([9, 5])
    weights = decoder.cross_attention_weights(torch.randint(0, VOCAB, (2, 4)), enc, enc_lengths)
    assert weights.shape == (2, 4, 4, 9)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 4), atol=1e-6)
    assert bool((weights[1, ..., 5:] == 0).all())
    first = decoder.cross_attention_weights(torch.randint(0, VOCAB, (2, 4)), enc, enc_lengths, layer=0)
    assert first.shape == (2, 4, 4, 9)


# ---------------------------------------------------------------- ASRModel


def test_decoder_io_with_prefix():
    targets = torch.tensor([[7, 8, 9], [10, -1, -1]])
    prefix = torch.tensor([[5, 6], [5, 11]])
    ys_in, ys_out = decoder_io(targets, torch.tensor([3, 1]), prefix)
    assert (SOS_ID, EOS_ID, PAD_ID) == (2, 3, 4)
    assert ys_in.tolist() == [[2, 5, 6, 7, 8, 9], [2, 5, 11, 10, 4, 4]]
    assert ys_out.tolist() == [[-1, -1, 7, 8, 9, 3], [-1, -1, 10, 3, -1, -1]]
    ys_in, ys_out = decoder_io(targets, torch.tensor([3, 1]), torch.zeros(2, 0, dtype=torch.long))
    assert ys_in.tolist() == [[2, 7, 8, 9], [2, 10, 4, 4]]
    assert ys_out.tolist() == [[7, 8, 9, 3], [10, 3, -1, -1]]


@pytest.mark.parametrize("pre_ln", [True, False])
def test_tiny_model_overfits_a_batch(pre_ln):
    torch.manual_seed(0)
    model = build_model(tiny_config(pre_ln, lsm_weight=0.0))
    batch = make_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        out = model(batch)
        first = first or {k: float(v.detach()) for k, v in out.items()}
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        out = model(batch)
    assert set(out) == {"loss", "att_loss", "ctc_loss", "acc"}
    assert first["loss"] > 3.0 and float(out["loss"]) < 0.3, (first, out)
    assert float(out["acc"]) == 1.0
    assert float(out["loss"]) == pytest.approx(0.3 * float(out["ctc_loss"]) + 0.7 * float(out["att_loss"]), rel=1e-5)


def test_ctc_only_and_attention_only_models():
    batch = make_batch()
    ctc_only = build_model(tiny_config(ctc_weight=1.0))
    assert ctc_only.decoder is None
    out = ctc_only(batch)
    assert set(out) == {"loss", "ctc_loss"} and torch.equal(out["loss"], out["ctc_loss"])
    with pytest.raises(RuntimeError, match="no decoder"):
        ctc_only.attention_loss(torch.zeros(1, 2, 32), torch.tensor([2]), batch.targets[:1],
                                batch.target_lengths[:1], batch.prefix[:1])
    att_only = build_model(tiny_config(ctc_weight=0.0))
    assert att_only.ctc is None
    out = att_only(batch)
    assert set(out) == {"loss", "att_loss", "acc"} and torch.equal(out["loss"], out["att_loss"])
    out["loss"].backward()
    assert all(p.grad is not None for p in att_only.parameters())


def test_scheduled_sampling_replaces_only_target_inputs():
    torch.manual_seed(0)
    model = build_model(tiny_config(sampling_prob=0.5))
    assert model.sampling_prob == 0.5
    model.set_sampling_prob(1.0)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        model.set_sampling_prob(1.5)
    batch = make_batch(prefix_len=2)
    enc, enc_lengths = model.encode(batch.feats, batch.feat_lengths)
    ys_in, _ = decoder_io(batch.targets, batch.target_lengths, batch.prefix)
    sampled = model.scheduled_sampling(ys_in, enc, enc_lengths, 2, batch.target_lengths)
    greedy = model.decoder(ys_in, enc, enc_lengths).argmax(-1)  # dropout is 0: the same first pass
    for b, n in enumerate(batch.target_lengths.tolist()):
        assert sampled[b, :3].tolist() == ys_in[b, :3].tolist()  # <sos> and the prefix are kept
        assert sampled[b, 3 : 3 + n].tolist() == greedy[b, 2 : 2 + n].tolist()
        assert sampled[b, 3 + n :].tolist() == ys_in[b, 3 + n :].tolist()  # padding is kept
    assert not torch.equal(sampled, ys_in)
    # The training forward takes the sampled path; eval mode never does.
    with torch.no_grad():
        model.train()
        with_sampling = model(batch)["att_loss"]
        model.eval()
        eval_with_sampling = model(batch)["att_loss"]
        model.set_sampling_prob(0.0)
        eval_without = model(batch)["att_loss"]
        model.train()
        train_without = model(batch)["att_loss"]
    assert not torch.equal(with_sampling, train_without)
    assert torch.equal(eval_with_sampling, eval_without) and torch.equal(eval_without, train_without)


def test_encode_applies_cmvn_and_specaug_only_in_training():
    torch.manual_seed(0)
    model = build_model(tiny_config(specaug=SpecAugmentConfig(freq_width=4, max_time_width=5)))
    batch = make_batch()
    model.eval()
    before, lengths = model.encode(batch.feats, batch.feat_lengths)
    assert torch.equal(model.encode(batch.feats, batch.feat_lengths)[0], before)  # no masking in eval
    assert torch.equal(lengths, model.encoder.output_lengths(batch.feat_lengths))
    stats = CMVNStats(FEAT_DIM)
    stats.update(3.0 + 2.0 * torch.randn(500, FEAT_DIM))
    model.cmvn.set_stats(stats)
    normalised = model.encode(batch.feats * stats.istd.reciprocal() + stats.mean, batch.feat_lengths)[0]
    assert torch.allclose(normalised, before, atol=1e-4)
    model.train()
    assert not torch.allclose(model.encode(batch.feats, batch.feat_lengths)[0], model.encode(
        batch.feats, batch.feat_lengths)[0])
    assert "cmvn.mean" in model.state_dict() and "encoder.pos_enc.table" not in model.state_dict()


def test_build_model_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown encoder kind 'conformer'; valid names are transformer"):
        build_model(tiny_config(encoder=EncoderConfig(kind="conformer")))
    with pytest.raises(ValueError, match="unknown decoder kind 'rnnt'; valid names are maskctc, nat, transformer"):
        build_model(tiny_config(decoder=DecoderConfig(kind="rnnt")))
    with pytest.raises(ValueError, match="unknown subsampling 'conv2d5'; valid names are conv1d2, conv1d4_glu, "
                                         "conv2d2, conv2d4, conv2d6, conv2d8"):
        build_model(tiny_config(encoder=EncoderConfig(subsampling="conv2d5")))
    with pytest.raises(ValueError, match="unknown positional encoding 'rel'"):
        build_model(tiny_config(encoder=EncoderConfig(pos_enc="rel")))
    with pytest.raises(ValueError, match="unknown activation 'rleu'; valid names are gelu, relu, swish"):
        build_model(tiny_config(encoder=EncoderConfig(activation="rleu")))


def test_model_with_different_encoder_and_decoder_widths_and_activation():
    config = tiny_config(encoder=EncoderConfig(d_model=24, n_heads=2, n_layers=1, ffn_dim=48, activation="swish",
                                               subsampling="conv2d6"))
    model = build_model(config)
    out = model(make_batch(frames=60))
    assert torch.isfinite(out["loss"]) and model.config is config


def test_attention_loss_per_token_or_per_utterance():
    """length_normalized_loss=False sums the attention loss per utterance, on the CTC loss's scale."""
    batch = make_batch()
    torch.manual_seed(0)
    per_token = build_model(tiny_config()).eval()
    per_utterance = build_model(tiny_config(length_normalized_loss=False)).eval()
    per_utterance.load_state_dict(per_token.state_dict())
    a, b = per_token(batch), per_utterance(batch)
    # Every target token plus one <eos> per utterance is scored.
    tokens_per_utterance = float(batch.target_lengths.sum() + len(batch.target_lengths)) / len(batch.target_lengths)
    torch.testing.assert_close(b["att_loss"], a["att_loss"] * tokens_per_utterance)
    torch.testing.assert_close(b["ctc_loss"], a["ctc_loss"])
    torch.testing.assert_close(b["loss"], 0.3 * b["ctc_loss"] + 0.7 * b["att_loss"])
