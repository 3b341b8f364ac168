"""Batched beam search (asr.decode.decode) on a tiny model trained here on spoken digits (FSDD).

Checked against a straightforward per-utterance beam search (tests/reference_search.py) and, for the
CTC prefix scorer, against brute-force enumeration of every alignment.
"""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch

from asr.audio import load_audio
from asr.data import DynamicBatchSampler, collate
from asr.data.text_dataset import TextDataset
from asr.decode import DecodeOptions, decode, greedy_search
from asr.decode.scorers import CTCPrefixScorer, scorer_weights
from asr.decode.search import best_extensions
from asr.features import CMVNStats, FeatureConfig, FeatureExtractor
from asr.model import EOS_ID, SOS_ID, DecoderConfig, EncoderConfig, ModelConfig, TransformerDecoder, build_model
from asr.model.lm import LMConfig, build_lm
from asr.text import train_tokenizer
from asr.train import OptimConfig, Trainer, TrainerConfig
from tests.reference_search import ctc_prefix_scores, reference_decode

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FEATURES = FeatureConfig(sample_rate=8000, n_mels=40, n_fft=256)


class Digits:
    """A model trained on FSDD digits, its tokenizer, and held-out utterances (features, words)."""

    def __init__(self, model, tokenizer, feats: list[torch.Tensor], words: list[str]):
        self.model, self.tokenizer, self.feats, self.words = model, tokenizer, feats, words

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        items = [{"id": str(i), "feats": self.feats[i], "targets": torch.zeros(0, dtype=torch.long),
                  "ctc_targets": torch.zeros(0, dtype=torch.long), "prefix": torch.zeros(0, dtype=torch.long)}
                 for i in indices]
        batch = collate(items)
        return batch.feats, batch.feat_lengths


def _digit_feats(shared, speakers, takes):
    extractor = FeatureExtractor(FEATURES)
    folder = shared / "data" / "fsdd" / "recordings"
    out = []
    for speaker in speakers:
        for take in takes:
            for digit, word in enumerate(DIGITS):
                wave = load_audio(folder / f"{digit}_{speaker}_{take}.wav", sample_rate=FEATURES.sample_rate)
                out.append((extractor.extract(wave), word))
    return out


@pytest.fixture(scope="module")
def digits(shared_dir) -> Digits:
    """~150 updates of a 2+2-layer d_model 64 model on 120 utterances (a few seconds on 2 cores)."""
    train = _digit_feats(shared_dir, ("george", "jackson", "lucas"), range(5, 9))
    test = _digit_feats(shared_dir, ("george", "jackson"), range(0, 1))
    tokenizer = train_tokenizer([word for _, word in train])
    torch.manual_seed(0)
    model = build_model(ModelConfig(
        vocab_size=tokenizer.vocab_size, input_dim=FEATURES.n_mels, ctc_weight=0.3, specaug=None,
        encoder=EncoderConfig(d_model=64, n_heads=4, n_layers=2, ffn_dim=128, subsampling_channels=16),
        decoder=DecoderConfig(d_model=64, n_heads=4, n_layers=2, ffn_dim=128),
    ))
    stats = CMVNStats(FEATURES.n_mels)
    for feats, _ in train:
        stats.update(feats)
    model.cmvn.set_stats(stats)
    examples = [{"id": str(i), "feats": f, "targets": torch.tensor(tokenizer.encode(w)),
                 "ctc_targets": torch.tensor(tokenizer.encode(w)), "prefix": torch.zeros(0, dtype=torch.long)}
                for i, (f, w) in enumerate(train)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for step in range(150):
        for group in optimizer.param_groups:
            group["lr"] = 3e-3 * min(1.0, (step + 1) / 30)
        batch = collate([examples[i] for i in torch.randperm(len(examples), generator=generator)[:32].tolist()])
        loss = model(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    model.eval()
    return Digits(model, tokenizer, [f for f, _ in test], [w for _, w in test])


def assert_same_nbest(result, reference) -> None:
    """A DecodeResult's n-best list equals the reference's (tokens exactly, scores to float32 precision)."""
    assert [h.tokens for h in result.nbest] == [tuple(tokens) for tokens, _, _ in reference]
    for hyp, (_, score, logps) in zip(result.nbest, reference):
        assert hyp.score == pytest.approx(score, rel=1e-4, abs=1e-4)
        assert hyp.token_logprobs == pytest.approx(logps, abs=1e-4)


OPTIONS = {
    "joint_ctc": DecodeOptions(beam_size=4, ctc_weight=0.3, nbest=4),
    "attention_only_normalised": DecodeOptions(beam_size=3, ctc_weight=0.0, length_penalty=1.0, nbest=3),
    "rules": DecodeOptions(beam_size=4, ctc_weight=0.5, ctc_pre_beam=1.0, length_bonus=0.5, no_repeat_ngram=2,
                           min_len=2, max_len=6, nbest=2),
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_batched_search_equals_reference(digits, name):
    options = OPTIONS[name]
    indices = range(0, 20, 3)
    results = decode(digits.model, *digits.batch(indices), options, tokenizer=digits.tokenizer)
    nontrivial = 0
    for result, i in zip(results, indices):
        reference = reference_decode(digits.model, digits.feats[i], options, digits.tokenizer)
        assert_same_nbest(result, reference)
        nontrivial += len(result.nbest) > 1
    assert nontrivial >= 3  # real n-best lists, not a single surviving hypothesis


def test_results_do_not_depend_on_batch_composition(digits):
    options = DecodeOptions(beam_size=4, ctc_weight=0.3, nbest=3)
    indices = list(range(12))
    together = decode(digits.model, *digits.batch(indices), options, tokenizer=digits.tokenizer)
    reordered = decode(digits.model, *digits.batch(indices[::-1]), options, tokenizer=digits.tokenizer)[::-1]
    pairs = [r for i in range(0, 12, 2)
             for r in decode(digits.model, *digits.batch([i, i + 1]), options, tokenizer=digits.tokenizer)]
    for a, b, c in zip(together, reordered, pairs):
        assert [h.tokens for h in a.nbest] == [h.tokens for h in b.nbest] == [h.tokens for h in c.nbest]
        assert [h.score for h in a.nbest] == pytest.approx([h.score for h in b.nbest], abs=1e-4)
        assert [h.score for h in a.nbest] == pytest.approx([h.score for h in c.nbest], abs=1e-4)
    # The model learned something: most held-out digits are recognised.
    assert sum(r.text == w for r, w in zip(together, digits.words)) >= 8


def test_beam_one_is_greedy(digits):
    feats, lengths = digits.batch(range(20))
    greedy = greedy_search(digits.model, feats, lengths)
    results = decode(digits.model, feats, lengths, DecodeOptions(beam_size=1, ctc_weight=0.0),
                     tokenizer=digits.tokenizer)
    assert [list(r.tokens) for r in results] == greedy
    # Capped by max_len, greedy and beam 1 still agree.
    short = decode(digits.model, feats, lengths, DecodeOptions(beam_size=1, ctc_weight=0.0, max_len=2),
                   tokenizer=digits.tokenizer)
    assert [list(r.tokens) for r in short] == greedy_search(digits.model, feats, lengths, max_len=2)


def test_nbest_scores_and_lengths(digits):
    feats, lengths = digits.batch(range(6))
    for penalty in (0.0, 1.0):
        options = DecodeOptions(beam_size=5, ctc_weight=0.0, nbest=5, length_penalty=penalty)
        for result in decode(digits.model, feats, lengths, options, tokenizer=digits.tokenizer):
            scores = [h.score for h in result.nbest]
            assert scores == sorted(scores, reverse=True) and len(result.nbest) == 5
            assert len({h.tokens for h in result.nbest}) == 5
            assert (result.tokens, result.score, result.text) == (result.nbest[0].tokens, scores[0],
                                                                   result.nbest[0].text)
            for hyp in result.nbest:  # attention only: the score is the sum of the token log-probs
                assert len(hyp.token_logprobs) == len(hyp.tokens) + 1
                total = sum(hyp.token_logprobs) / (len(hyp.tokens) + 1) ** penalty
                assert hyp.score == pytest.approx(total, abs=1e-4)
    # min_len = max_len: exactly that many tokens (<eos> suppressed until then), as the benchmark uses.
    fixed = DecodeOptions(beam_size=3, ctc_weight=0.3, min_len=7, max_len=7)
    limits = digits.model.encoder.output_lengths(lengths).clamp(max=7).tolist()
    assert [len(r.tokens) for r in decode(digits.model, feats, lengths, fixed, tokenizer=digits.tokenizer)] == limits


@torch.no_grad()
def test_decoder_shares_cross_attention_between_beam_hypotheses():
    """reorder_state(cross=False) keeps one row of cross K/V per utterance; steps match copied K/V."""
    torch.manual_seed(0)
    decoder = TransformerDecoder(12, 24, DecoderConfig(d_model=32, n_heads=4, n_layers=2, ffn_dim=64)).eval()
    enc, enc_lengths = torch.randn(2, 9, 24), torch.tensor([9, 5])
    state = decoder.init_state(enc, enc_lengths)
    _, state = decoder.step(torch.tensor([SOS_ID, SOS_ID]), state)
    expand = torch.arange(2).repeat_interleave(3)
    copied, shared = decoder.reorder_state(state, expand), decoder.reorder_state(state, expand, cross=False)
    assert shared.cross_keys[0].shape[0] == 2 and copied.cross_keys[0].shape[0] == 6
    tokens = torch.randint(5, 12, (6, 3))
    for t in range(3):
        expected, copied = decoder.step(tokens[:, t], copied)
        logits, shared = decoder.step(tokens[:, t], shared)
        assert torch.allclose(logits, expected, atol=1e-5)
        prune = torch.tensor([1, 1, 0, 5, 3, 3])  # within each utterance's group of 3
        copied, shared = decoder.reorder_state(copied, prune), decoder.reorder_state(shared, prune, cross=False)
    with pytest.raises(ValueError, match="4 hypotheses cannot share 3 rows"):
        decoder.step(torch.zeros(4, dtype=torch.long), decoder.reorder_state(
            decoder.reorder_state(state, torch.tensor([0, 1, 1])), torch.tensor([0, 1, 2, 2]), cross=False))


# ---------------------------------------------------------------- CTC prefix scorer


def brute_force_prefix(x: torch.Tensor, prefix: list[int], exact: bool) -> float:
    """log of the total probability of the alignments (every path over x's frames) whose collapsed
    labelling starts with `prefix` (exact=False) or is `prefix` (exact=True)."""
    frames, vocab = x.shape
    total = 0.0
    for path in itertools.product(range(vocab), repeat=frames):
        labels = [v for j, v in enumerate(path) if v != 0 and (j == 0 or path[j - 1] != v)]
        if labels == prefix if exact else labels[: len(prefix)] == prefix:
            total += math.exp(sum(float(x[t, v]) for t, v in enumerate(path)))
    return math.log(total) if total > 0 else -math.inf


def test_ctc_prefix_scorer_matches_brute_force():
    torch.manual_seed(0)
    vocab, beam = 6, 2  # ids 0 (blank) .. 5; EOS_ID = 3 is scored as "the labelling ends here"
    log_probs = torch.randn(2, 5, vocab).mul(2).log_softmax(dim=-1)
    lengths = torch.tensor([5, 4])  # the second utterance is padded by one frame
    scorer = CTCPrefixScorer(log_probs, lengths, beam)
    state = scorer.init_state()
    prefixes = [[] for _ in range(4)]
    totals = torch.zeros(4, dtype=torch.float64)
    # Hypotheses grow, get duplicated and reordered (within their utterance) as in a beam search;
    # the last step makes "4 4 4", which needs 5 frames (blanks between repeats): impossible in 4.
    plan = [([0, 0, 2, 2], [1, 2, 4, 1]), ([1, 0, 2, 3], [1, 1, 4, 5]), ([0, 1, 2, 2], [2, 5, 4, 1]), None]
    for step in plan:
        candidates = torch.tensor([[1, 2, 4, 5]] * 4)
        scores, state = scorer.score(state, candidates, torch.zeros(1, vocab))
        for n in range(4):
            x = log_probs[n // beam, : int(lengths[n // beam])].double()
            expected = brute_force_prefix(x, prefixes[n], exact=True)
            assert float(totals[n] + scores[n, EOS_ID]) == pytest.approx(expected, rel=1e-5, abs=1e-5)
            for c in (1, 2, 4, 5):
                expected = brute_force_prefix(x, prefixes[n] + [c], exact=False)
                assert float(totals[n] + scores[n, c]) == pytest.approx(expected, rel=1e-5)
                assert ctc_prefix_scores(x.tolist(), prefixes[n] + [c])[0] == pytest.approx(expected, rel=1e-6)
            assert scores[n, 0] == -math.inf  # not a candidate
        if step is None:
            break
        index, tokens = torch.tensor(step[0]), torch.tensor(step[1])
        totals = totals[index] + scores[index, tokens].double()
        prefixes = [prefixes[i] + [c] for i, c in zip(step[0], step[1])]
        state = scorer.select(state, index, tokens)
    assert prefixes[2] == [4, 4, 4] and totals[2] == -math.inf and torch.isfinite(totals[[0, 1, 3]]).all()


# ---------------------------------------------------------------- guards against loops


def looping_decoder(vocab_size: int, enc_dim: int, cycle: list[int]) -> TransformerDecoder:
    """A real TransformerDecoder with weights set by hand so that it ignores the audio and repeats
    `cycle` forever: <sos> -> cycle[0] -> cycle[1] -> ... -> cycle[0] -> ... Its second choice is
    <eos>, 3 nats behind after the cycle's last token and 10 elsewhere: a decoder that lost its place.

    Every sub-layer's output projection is zero, so the final LayerNorm sees the token embedding
    (plus small positions); each fed token has its own direction, which the output layer maps to logits.
    """
    d_model = 64
    config = DecoderConfig(d_model=d_model, n_heads=4, n_layers=1, ffn_dim=64, dropout=0.0, tie_embeddings=False)
    decoder = TransformerDecoder(vocab_size, enc_dim, config).eval()
    with torch.no_grad():
        for layer in decoder.layers:
            for linear in (layer.self_attn.out, layer.cross_attn.out, layer.ffn.net[-1]):
                linear.weight.zero_()
                linear.bias.zero_()
        decoder.embed.weight.zero_()
        decoder.output.weight.zero_()
        decoder.output.bias.zero_()
        scale = 2 * math.sqrt(d_model / 2)  # direction . LayerNorm(direction)
        fed = [SOS_ID, *cycle]
        for j, token in enumerate(fed):
            direction = torch.zeros(d_model)
            direction[2 * j], direction[2 * j + 1] = 1.0, -1.0
            decoder.embed.weight[token] = 100.0 * direction
            successor = cycle[j % len(cycle)]
            decoder.output.weight[successor] += direction * 20.0 / scale
            eos = 17.0 if token == cycle[-1] else 10.0
            decoder.output.weight[EOS_ID] += direction * eos / scale
    return decoder


def test_loop_is_stopped_by_joint_ctc_and_ngram_blocking(digits):
    tokenizer = digits.tokenizer
    six = digits.words.index("six")
    cycle = tokenizer.encode("six")
    model = copy.deepcopy(digits.model)
    model.decoder = looping_decoder(tokenizer.vocab_size, 64, cycle)
    feats, lengths = digits.batch([six])

    def run(**options):
        return decode(model, feats, lengths, DecodeOptions(**options), tokenizer=tokenizer)[0]

    limit = int(model.encoder.output_lengths(lengths)[0])
    looped = run(beam_size=1, ctc_weight=0.0)
    assert len(looped.tokens) == limit and looped.text.startswith("sixsixsix")
    assert run(beam_size=1, ctc_weight=0.5).text == "six"
    assert run(beam_size=4, ctc_weight=0.5).text == "six"
    blocked = run(beam_size=1, ctc_weight=0.0, no_repeat_ngram=2)
    assert blocked.text == "sixs" and len(blocked.token_logprobs) == 5  # ended with <eos>
    bigrams = list(zip(blocked.tokens, blocked.tokens[1:]))
    assert len(bigrams) == len(set(bigrams))
    assert run(beam_size=1, ctc_weight=0.0, no_repeat_ngram=1).text == "six"


# ---------------------------------------------------------------- prefixes and options


def test_forced_task_and_language_tokens():
    tokenizer = train_tokenizer(["hallo welt", "hello world"], extra_tokens=["<asr>", "<st>", "<de>"])
    torch.manual_seed(0)
    model = build_model(ModelConfig(
        vocab_size=tokenizer.vocab_size, input_dim=16, specaug=None,
        encoder=EncoderConfig(d_model=32, n_heads=4, n_layers=1, ffn_dim=64, subsampling_channels=8),
        decoder=DecoderConfig(d_model=32, n_heads=4, n_layers=1, ffn_dim=64),
    )).eval()
    feats, lengths = torch.randn(2, 40, 16), torch.tensor([40, 31])
    options = DecodeOptions(beam_size=1, ctc_weight=0.0, task="st", target_lang="de", max_len=6)
    results = decode(model, feats, lengths, options, tokenizer=tokenizer)
    enc, enc_lengths = model.encode(feats, lengths)
    forced = [SOS_ID, tokenizer.token_to_id("<st>"), tokenizer.token_to_id("<de>")]
    for b, result in enumerate(results):
        # The decoder saw <sos><st><de> before the output: teacher forcing gives the same log-probs,
        # normalised over the tokens the search may emit (not the specials and task tokens).
        tokens = torch.tensor([forced + list(result.tokens)])
        logits = model.decoder(tokens, enc[b : b + 1], enc_lengths[b : b + 1])[0]
        logp = logits.index_fill(1, torch.tensor(sorted(tokenizer.suppressed_ids)), float("-inf")).log_softmax(-1)
        expected = logp[len(forced) - 1 :].gather(1, torch.tensor(list(result.tokens) + [EOS_ID])[:, None])
        assert result.token_logprobs == pytest.approx(expected[:, 0].tolist(), abs=1e-4)
        assert not set(result.tokens) & tokenizer.skipped_ids  # never emits specials or task tokens
    # A tokenizer without task tokens gets none forced; an unknown language is an error.
    plain = train_tokenizer(["hello world"])
    with pytest.raises(ValueError, match="target_lang='fr'.*no <fr> token.*<asr>, <st>, <de>"):
        decode(model, feats, lengths, options.replace(target_lang="fr"), tokenizer=tokenizer)
    with pytest.raises(ValueError, match="CTC head models the source"):
        decode(model, feats, lengths, options.replace(ctc_weight=0.3), tokenizer=tokenizer)
    assert decode(model, feats[:0], lengths[:0], options, tokenizer=tokenizer) == []
    with pytest.raises(ValueError, match="no <fr> token"):  # an empty batch checks the options too
        decode(model, feats[:0], lengths[:0], options.replace(target_lang="fr"), tokenizer=tokenizer)
    sizes = f"tokenizer has {plain.vocab_size} tokens but the model {model.config.vocab_size}"
    with pytest.raises(ValueError, match=sizes):
        decode(model, feats, lengths, options.replace(target_lang=None), tokenizer=plain)


def test_options_and_input_errors(digits):
    for bad, match in [({"beam_size": 0}, "beam_size=0"), ({"nbest": 3, "beam_size": 2}, "nbest=3"),
                       ({"ctc_weight": 1.5}, "ctc_weight=1.5"), ({"ctc_pre_beam": 0.5}, "ctc_pre_beam"),
                       ({"min_len": 5, "max_len": 4}, "min_len=5"), ({"task": "translate"}, "task='translate'")]:
        with pytest.raises(ValueError, match=f"DecodeOptions.{match}"):
            DecodeOptions(**bad)
    feats, lengths = digits.batch([0, 1])
    with pytest.raises(ValueError, match="lm_weight=0.2 needs a language model"):
        decode(digits.model, feats, lengths, DecodeOptions(lm_weight=0.2), tokenizer=digits.tokenizer)
    with pytest.raises(ValueError, match=r"feats \(B, T, F\)"):
        decode(digits.model, feats[0], lengths, DecodeOptions(), tokenizer=digits.tokenizer)
    no_ctc = copy.deepcopy(digits.model)
    no_ctc.ctc = None
    with pytest.raises(ValueError, match="no CTC head.*ctc_weight=0"):
        decode(no_ctc, feats, lengths, DecodeOptions(ctc_weight=0.3), tokenizer=digits.tokenizer)
    assert decode(no_ctc, feats, lengths, DecodeOptions(ctc_weight=0.0), tokenizer=digits.tokenizer)
    ctc_only = copy.deepcopy(digits.model)
    ctc_only.decoder = None
    with pytest.raises(ValueError, match="no attention decoder.*ctc_weight=1.0"):
        decode(ctc_only, feats, lengths, DecodeOptions(ctc_weight=0.5), tokenizer=digits.tokenizer)
    assert scorer_weights(DecodeOptions(ctc_weight=0.3, lm_weight=0.2, length_bonus=0.0)) == pytest.approx(
        {"decoder": 0.7, "ctc": 0.3, "lm": 0.2})


def test_ctc_only_prefix_search(digits):
    """ctc_weight=1: CTC prefix beam search over the whole vocabulary (no pre-beam, no decoder)."""
    options = DecodeOptions(beam_size=3, ctc_weight=1.0, nbest=2)
    no_decoder = copy.deepcopy(digits.model)
    no_decoder.decoder = None
    indices = [0, 5, 9]
    results = decode(no_decoder, *digits.batch(indices), options, tokenizer=digits.tokenizer)
    for result, i in zip(results, indices):
        assert_same_nbest(result, reference_decode(digits.model, digits.feats[i], options, digits.tokenizer))
    # At least as good as greedy CTC decoding (best path, repeats merged, blanks dropped).
    feats, lengths = digits.batch(range(20))
    enc, enc_lengths = digits.model.encode(feats, lengths)
    best_path = digits.model.ctc.log_probs(enc).argmax(dim=-1)
    greedy = [digits.tokenizer.decode(torch.unique_consecutive(row[:n]).tolist())
              for row, n in zip(best_path, enc_lengths)]
    search = decode(no_decoder, feats, lengths, options, tokenizer=digits.tokenizer)
    correct = sum(r.text == w for r, w in zip(search, digits.words))
    assert correct >= sum(g == w for g, w in zip(greedy, digits.words)) and correct >= 5


# ---------------------------------------------------------------- language model fusion


@pytest.fixture(scope="module")
def five_lm(digits, tmp_path_factory):
    """A tiny LM trained with the Trainer on digit words, four in five of them "five"."""
    texts = ["five"] * 40 + list(DIGITS)
    dataset = TextDataset(texts, digits.tokenizer)
    sampler = DynamicBatchSampler(dataset.lengths, max_batch_size=10, num_buckets=1, seed=0)
    torch.manual_seed(0)
    lm = build_lm(LMConfig(vocab_size=digits.tokenizer.vocab_size, d_model=32, n_heads=4, n_layers=1, ffn_dim=64,
                           dropout=0.0))
    config = TrainerConfig(max_steps=40, valid_decode_utts=0, progress_bar=False, plot_attention=False)
    Trainer(lm, dataset, sampler, None, config, OptimConfig(lr=1e-2, warmup_steps=10),
            tmp_path_factory.mktemp("lm")).fit()
    return lm.eval()


def test_lm_fusion_adds_weighted_lm_scores(digits, five_lm):
    feats, lengths = digits.batch(range(10))
    options = DecodeOptions(beam_size=3, ctc_weight=0.0, lm_weight=0.5, nbest=3)
    results = decode(digits.model, feats, lengths, options, tokenizer=digits.tokenizer, lm=five_lm)
    for result in results:
        for hyp in result.nbest:
            targets = torch.tensor([hyp.tokens or [-1]])
            lm_score = float(five_lm.sequence_logprob(targets, torch.tensor([len(hyp.tokens)])))
            assert hyp.score == pytest.approx(sum(hyp.token_logprobs) + 0.5 * lm_score, abs=1e-4)
    # A heavier LM pulls the outputs towards its text.
    def lm_total(weight: float) -> tuple[float, int]:
        texts = [r.text for r in decode(digits.model, feats, lengths, options.replace(lm_weight=weight),
                                        tokenizer=digits.tokenizer, lm=five_lm)]
        targets = [torch.tensor(digits.tokenizer.encode(t)) for t in texts]
        padded = torch.nn.utils.rnn.pad_sequence(targets, batch_first=True, padding_value=-1)
        logp = five_lm.sequence_logprob(padded, torch.tensor([len(t) for t in targets]))
        return float(logp.sum()), texts.count("five")

    (plain, fives), (fused, more_fives) = lm_total(0.0), lm_total(3.0)
    assert fused > plain and more_fives > fives


def test_batched_search_with_lm_equals_reference(digits, five_lm):
    options = DecodeOptions(beam_size=3, ctc_weight=0.3, lm_weight=0.4, length_bonus=0.3, nbest=3)
    indices = [2, 5, 9, 15]
    results = decode(digits.model, *digits.batch(indices), options, tokenizer=digits.tokenizer, lm=five_lm)
    for result, i in zip(results, indices):
        assert_same_nbest(result, reference_decode(digits.model, digits.feats[i], options, digits.tokenizer,
                                                   lm=five_lm))
    with pytest.raises(ValueError, match="language model has 7 tokens"):
        decode(digits.model, *digits.batch(indices), options, tokenizer=digits.tokenizer,
               lm=build_lm(LMConfig(vocab_size=7, d_model=8, n_heads=2, n_layers=1, ffn_dim=8)))


@pytest.mark.parametrize(("beam", "vocab", "k"), [(5, 300, 10), (3, 4, 6), (1, 50, 2), (5, 51865, 10), (2, 3000, 4)])
def test_best_extensions_are_the_top_k_of_the_whole_beam(beam, vocab, k):
    torch.manual_seed(0)
    step_scores = torch.randn(4, beam, vocab).log_softmax(-1)
    step_scores[:, :, torch.randint(0, vocab, (vocab // 3,))] = float("-inf")  # blocked tokens
    step_scores[1, :, : vocab // 2] -= 20.0  # the best tokens in one part of the row (row_topk's chunks)
    scores = torch.randn(4, beam)
    scores[0, 1:] = float("-inf")  # the first step: only one hypothesis alive
    top, index = best_extensions(step_scores, scores, k)
    total = (scores[:, :, None] + step_scores).view(4, -1)
    expected = total.topk(k, dim=1)
    assert torch.equal(top, expected.values)
    assert torch.equal(total.gather(1, index), top)
    assert index.unique(dim=1).size(1) == k  # distinct extensions
    if vocab >= 2 * k:  # then all come from the live hypothesis
        assert torch.equal(index[0] // vocab, torch.zeros(k, dtype=torch.long))
