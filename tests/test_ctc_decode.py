"""CTC greedy, CTC prefix beam search and attention rescoring (asr/decode/ctc_decode.py), checked against
brute-force enumeration and hand computation; then through asr.decode.decode and asr-transcribe --method
on a tiny model trained here with the real trainer."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import asr
from asr.cli.transcribe import main as transcribe_main
from asr.decode import DecodeOptions, available_methods, decode
from asr.decode.ctc_decode import attention_rescoring, ctc_greedy, ctc_prefix_beam_search
from asr.features import FeatureExtractor
from asr.model import EOS_ID, SOS_ID, ModelConfig, build_model
from asr.model.lm import LMConfig, build_lm
from asr.model.model import decoder_io
from tests.decoder_helper import tiny_decoder, train_tiny
from tests.train_helper import FEATURES

# ---------------------------------------------------------------- CTC greedy


def test_greedy_is_the_collapsed_best_path():
    torch.manual_seed(0)
    log_probs = torch.randn(3, 9, 6).mul(2).log_softmax(dim=-1)
    lengths = torch.tensor([9, 6, 1])
    blocked = [SOS_ID]
    out = ctc_greedy(log_probs, lengths, blocked)
    for b in range(3):
        x = log_probs[b, : lengths[b]].clone()
        x[:, blocked] = -math.inf
        path = x.argmax(dim=1).tolist()
        tokens, confidence = [], []
        for t, label in enumerate(path):
            if t > 0 and label == path[t - 1]:
                if label != 0:
                    confidence[-1] = max(confidence[-1], float(x[t, label]))
                continue
            if label != 0:
                tokens.append(label)
                confidence.append(float(x[t, label]))
        n = int(out.lengths[b])
        assert out.tokens[b, :n].tolist() == tokens and SOS_ID not in tokens
        assert out.token_logprobs[b, :n].tolist() == pytest.approx(confidence)
        assert float(out.path_logprob[b]) == pytest.approx(float(x.max(dim=1).values.sum()), rel=1e-6)
    assert (out.tokens[1:, int(out.lengths[1:].max()):] == 0).all()  # padding
    with pytest.raises(ValueError, match="blank cannot be blocked"):
        ctc_greedy(log_probs, lengths, [0])
    with pytest.raises(ValueError, match="blank cannot be blocked"):
        ctc_prefix_beam_search(log_probs, lengths, 2, [0])
    with pytest.raises(ValueError, match="beam must be >= 1, got 0"):
        ctc_prefix_beam_search(log_probs, lengths, 0)


# ---------------------------------------------------------------- CTC prefix beam search


def brute_force_labelings(x: torch.Tensor) -> dict[tuple[int, ...], float]:
    """log P(labelling) of every labelling of x (T, V) with non-zero probability, over all alignments."""
    frames, vocab = x.shape
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(vocab), repeat=frames):
        logp = sum(float(x[t, v]) for t, v in enumerate(path))
        if logp == -math.inf:
            continue
        labels = tuple(v for j, v in enumerate(path) if v != 0 and (j == 0 or path[j - 1] != v))
        totals[labels] = totals.get(labels, 0.0) + math.exp(logp)
    return {labels: math.log(p) for labels, p in totals.items()}


def test_prefix_beam_search_equals_brute_force():
    torch.manual_seed(0)
    log_probs = torch.randn(3, 5, 5).mul(2).log_softmax(dim=-1)  # blank 0 and labels 1..4
    lengths = torch.tensor([5, 4, 3])  # padded frames must not count
    wide = ctc_prefix_beam_search(log_probs, lengths, beam=400, blocked=[3])
    narrow = ctc_prefix_beam_search(log_probs, lengths, beam=3, blocked=[3])
    for b in range(3):
        x = log_probs[b, : lengths[b]].double().clone()
        x[:, 3] = -math.inf
        expected = brute_force_labelings(x)
        # A beam wide enough for every prefix is exact: every labelling, with its total probability.
        assert {h.tokens for h in wide[b]} == set(expected)
        for hyp in wide[b]:
            assert hyp.score == pytest.approx(expected[hyp.tokens], abs=1e-9)
        assert [h.score for h in wide[b]] == sorted((h.score for h in wide[b]), reverse=True)
        # A narrow beam keeps 3 prefixes; pruning can only lose paths, never invent them.
        assert len(narrow[b]) == 3 and narrow[b][0].tokens == wide[b][0].tokens
        assert all(h.score <= expected[h.tokens] + 1e-9 for h in narrow[b])
        assert len({h.tokens for h in narrow[b]}) == 3  # the same prefix never twice


def test_prefix_beam_results_do_not_depend_on_the_batch():
    torch.manual_seed(1)
    log_probs = torch.randn(4, 30, 12).mul(3).log_softmax(dim=-1)
    lengths = torch.tensor([30, 17, 25, 3])
    together = ctc_prefix_beam_search(log_probs, lengths, beam=4)
    for b in range(4):
        alone = ctc_prefix_beam_search(log_probs[b : b + 1, : lengths[b]], lengths[b : b + 1], beam=4)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[b]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[b]], abs=1e-9)


# ---------------------------------------------------------------- a trained model


@pytest.fixture(scope="module")
def trained(shared_dir, tmp_path_factory):
    """An attention decoder + CTC model after a few real training updates, and its model directory."""
    return train_tiny(tmp_path_factory.mktemp("ctc") / "exp", shared_dir, tiny_decoder("transformer"), steps=6)


@pytest.fixture(scope="module")
def speech(trained):
    return asr.load_model(trained.model_dir)


def _features(speech, paths):
    extractor = FeatureExtractor(FEATURES)
    feats = [extractor.extract(asr.audio.load_audio(p, sample_rate=FEATURES.sample_rate)) for p in paths]
    lengths = torch.tensor([f.size(0) for f in feats])
    return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lengths


@torch.no_grad()
def test_attention_rescoring_ranks_by_the_combined_score(speech, trained):
    model, tokenizer = speech.model, speech.tokenizer
    feats, lengths = _features(speech, trained.test_wavs[:3])
    lm = build_lm(LMConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_heads=2, n_layers=1, ffn_dim=32)).eval()
    options = DecodeOptions(method="attention_rescoring", beam_size=4, nbest=4, ctc_weight=0.4, length_bonus=0.5,
                            lm_weight=0.3, task="asr")
    results = decode(model, feats, lengths, options, tokenizer=tokenizer, lm=lm)
    enc, enc_lengths = model.encode(feats, lengths)
    candidates = ctc_prefix_beam_search(model.ctc.log_probs(enc), enc_lengths, beam=4,
                                        blocked=sorted(tokenizer.skipped_ids - {0}))
    prefix = torch.tensor([[tokenizer.token_to_id("<asr>")]])
    for b, result in enumerate(results):
        assert {h.tokens for h in result.nbest} == {h.tokens for h in candidates[b]}
        expected = {}
        for hyp in candidates[b]:
            # Teacher forcing of one hypothesis at a time, then the weighted sum by hand.
            targets = torch.tensor([hyp.tokens], dtype=torch.long).view(1, -1)
            ys_in, ys_out = decoder_io(targets, torch.tensor([len(hyp.tokens)]), prefix)
            # Normalised over the tokens the search may emit, as the beam search does.
            logits = model.decoder(ys_in, enc[b : b + 1], enc_lengths[b : b + 1])[0]
            logp = logits.index_fill(1, torch.tensor(sorted(tokenizer.suppressed_ids)), float("-inf")).log_softmax(-1)
            att = sum(float(logp[u, y]) for u, y in enumerate(ys_out[0].tolist()) if y >= 0)
            lm_score = float(lm.sequence_logprob(targets, torch.tensor([len(hyp.tokens)]))[0])
            expected[hyp.tokens] = 0.6 * att + 0.4 * hyp.score + 0.5 * len(hyp.tokens) + 0.3 * lm_score
        assert [h.score for h in result.nbest] == pytest.approx([expected[h.tokens] for h in result.nbest], abs=1e-3)
        assert result.tokens == max(expected, key=expected.get)
        assert result.nbest[0].token_logprobs[-1] <= 0 and len(result.token_logprobs) == len(result.tokens) + 1
        assert result.text == tokenizer.decode(result.tokens)
    assert attention_rescoring(model.decoder, enc, enc_lengths, prefix, [[]], 0.3) == [[]]  # nothing to rescore


def test_methods_through_decode_and_the_cli(speech, trained, capsys):
    assert available_methods(speech.model) == ["attention", "ctc_greedy", "ctc_prefix_beam", "attention_rescoring"]
    feats, lengths = _features(speech, trained.test_wavs)
    greedy = decode(speech.model, feats, lengths, DecodeOptions(method="ctc_greedy"), tokenizer=speech.tokenizer)
    beam = decode(speech.model, feats, lengths, DecodeOptions(method="ctc_prefix_beam", beam_size=3, nbest=2),
                  tokenizer=speech.tokenizer)
    enc, enc_lengths = speech.model.encode(feats, lengths)
    best_path = speech.model.ctc.log_probs(enc).argmax(dim=-1)
    for g, b, row, n in zip(greedy, beam, best_path, enc_lengths):
        collapsed = [t for t in torch.unique_consecutive(row[:n]).tolist() if t != 0]
        if not set(collapsed) & speech.tokenizer.skipped_ids:  # (blocked ids would change the path)
            assert list(g.tokens) == collapsed
        assert len(g.nbest) == 1 and len(b.nbest) == 2 and b.nbest[0].score >= b.nbest[1].score
        assert g.text == speech.tokenizer.decode(g.tokens) and EOS_ID not in b.tokens
    for method, expected in (("ctc_greedy", greedy), ("ctc_prefix_beam", beam), ("attention_rescoring", None)):
        paths = [str(p) for p in trained.test_wavs[:3]]
        assert transcribe_main([str(trained.model_dir), *paths, "--method", method, "--beam-size", "3",
                                "--quiet"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split()[0] for line in lines] == [p.stem for p in trained.test_wavs[:3]]
        if expected is not None:
            assert [line.partition(" ")[2] for line in lines] == [r.text for r in expected[:3]]


def test_method_errors_name_the_problem(speech, trained, capsys):
    with pytest.raises(ValueError, match="DecodeOptions.method='beam': must be one of attention, ctc_greedy"):
        DecodeOptions(method="beam")
    feats, lengths = _features(speech, trained.test_wavs[:1])
    model, tokenizer = speech.model, speech.tokenizer
    with pytest.raises(ValueError, match="method='ctc_greedy' with task='st'"):
        decode(model, feats, lengths, DecodeOptions(method="ctc_greedy", task="st"), tokenizer=tokenizer)
    with pytest.raises(ValueError, match="lm_weight=0.5: language-model fusion is for method=attention or "
                                         "attention_rescoring, not 'ctc_prefix_beam'"):
        decode(model, feats, lengths, DecodeOptions(method="ctc_prefix_beam", lm_weight=0.5), tokenizer=tokenizer)
    no_ctc = build_model(ModelConfig(vocab_size=tokenizer.vocab_size, input_dim=FEATURES.n_mels, ctc_weight=0.0,
                                     encoder=model.config.encoder, decoder=model.config.decoder))
    with pytest.raises(ValueError, match="method='attention_rescoring' needs a CTC head.*decodes with: attention$"):
        decode(no_ctc, feats, lengths, DecodeOptions(method="attention_rescoring"), tokenizer=tokenizer)
    ctc_only = build_model(ModelConfig(vocab_size=tokenizer.vocab_size, input_dim=FEATURES.n_mels, ctc_weight=1.0,
                                       encoder=model.config.encoder))
    assert available_methods(ctc_only) == ["ctc_greedy", "ctc_prefix_beam"]
    assert len(decode(ctc_only, feats, lengths, DecodeOptions(method="ctc_prefix_beam"), tokenizer=tokenizer)) == 1
    with pytest.raises(ValueError, match="needs an autoregressive attention decoder to rescore with, but this model's "
                                         "decoder is 'none'; this model decodes with: ctc_greedy, ctc_prefix_beam"):
        decode(ctc_only, feats, lengths, DecodeOptions(method="attention_rescoring"), tokenizer=tokenizer)
    with pytest.raises(ValueError, match="lm_weight=0.2 needs a language model"):
        decode(model, feats, lengths, DecodeOptions(method="attention_rescoring", lm_weight=0.2), tokenizer=tokenizer)
    with pytest.raises(ValueError, match="the tokenizer has 6 tokens but the model"):
        decode(model, feats, lengths, DecodeOptions(method="ctc_greedy"), tokenizer=asr.text.train_tokenizer(["a"]))
    with pytest.raises(ValueError, match=r"expected feats \(B, T, F\)"):
        decode(model, feats[0], lengths, DecodeOptions(method="ctc_greedy"), tokenizer=tokenizer)
    assert transcribe_main([str(trained.model_dir), str(trained.test_wavs[0]), "--method", "maskctc"]) == 2
    assert ("method='maskctc' needs a model trained with decoder kind 'maskctc', but this model's decoder is "
            "'autoregressive'") in capsys.readouterr().err
    assert transcribe_main([str(trained.model_dir), str(trained.test_wavs[0]), "--method", "fast"]) == 2
    assert "DecodeOptions.method='fast': must be one of" in capsys.readouterr().err
