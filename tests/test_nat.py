"""The non-autoregressive decoder (decoder kind "nat"): training targets, the length-candidate search,
the invariant that the output has the predicted length, <eos> cutting, CTC rescoring of candidates,
and a model trained here with the real trainer, decoded through asr.decode.decode and asr-transcribe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import asr
from asr.cli.transcribe import main as transcribe_main
from asr.decode import DecodeOptions, available_methods, decode
from asr.decode.nat import candidate_lengths, first_eos_cut
from asr.model import EOS_ID, IGNORE_ID, DecoderConfig, EncoderConfig, ModelConfig, NATConfig, NATModel, build_model
from asr.model.nat import nat_targets
from asr.recipe.config import ExperimentConfig
from tests.decoder_helper import tiny_decoder, train_tiny
from tests.reference_search import ctc_prefix_scores
from tests.test_ctc_decode import _features

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_length_and_token_targets():
    targets = torch.tensor([[7, 8, 9, -1, -1], [5, -1, -1, -1, -1], [6, 6, 6, 6, 6]])
    lengths = torch.tensor([3, 1, 5])
    predict = nat_targets(targets, lengths, max_len=4, length_mode="predict")
    # The length class is the number of tokens, clamped to max_len (the longest output there is).
    assert predict.length_targets.tolist() == [3, 1, 4] and predict.query_lengths.tolist() == [3, 1, 4]
    assert predict.outputs.tolist() == [[7, 8, 9, -1], [5, -1, -1, -1], [6, 6, 6, 6]]
    eos = nat_targets(targets, lengths, max_len=4, length_mode="eos")
    assert eos.query_lengths.tolist() == [4, 4, 4] and eos.length_targets.tolist() == [3, 1, 4]
    assert eos.outputs.tolist() == [[7, 8, 9, EOS_ID], [5, EOS_ID, EOS_ID, EOS_ID], [6, 6, 6, 6]]
    wide = nat_targets(targets[:2, :3], lengths[:2], max_len=6, length_mode="predict")
    assert wide.outputs.tolist() == [[7, 8, 9], [5, -1, -1]]  # W = the longest target in the batch
    empty = nat_targets(torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, dtype=torch.long), 4, "predict")
    assert empty.outputs.tolist() == [[IGNORE_ID], [IGNORE_ID]] and empty.length_targets.tolist() == [0, 0]
    with pytest.raises(ValueError, match="length_mode must be 'predict' or 'eos'"):
        nat_targets(targets, lengths, 4, "guess")


def test_candidate_lengths():
    logp = torch.tensor([[-3.0, -0.5, -1.0, -2.0, -4.0], [-9.0, -8.0, -0.1, -7.0, -0.2]])
    lengths, values = candidate_lengths(logp, torch.tensor([4, 3]), count=3)
    assert lengths.tolist() == [[1, 2, 3], [2, 3, 1]] and values[0].tolist() == [-0.5, -1.0, -2.0]  # 4 > limit 3
    lengths, values = candidate_lengths(logp, torch.tensor([4, 1]), count=3, ctc_lengths=torch.tensor([3, 3]))
    assert lengths[0].tolist() == [3, 2, 4] and lengths[1, :2].tolist() == [1, 0]  # nearest to 3, shorter first
    assert values[1].tolist() == [-8.0, -9.0, float("-inf")]  # over the limit 1: a dead candidate


@pytest.fixture(scope="module")
def trained(shared_dir, tmp_path_factory):
    decoder = tiny_decoder("nat", nat=NATConfig(max_len=12))
    return train_tiny(tmp_path_factory.mktemp("nat") / "exp", shared_dir, decoder)


@pytest.fixture(scope="module")
def speech(trained):
    return asr.load_model(trained.model_dir)


def test_trains_with_the_trainer(trained):
    records = [json.loads(line) for line in (trained.exp_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["event"] == "train"]
    valid = [r for r in records if r["event"] == "valid"]
    assert trained.result.step == 6 and len(train) == 6
    assert all({"token_loss", "length_loss", "length_acc", "ctc_loss"} <= set(r) for r in train)
    assert all(r["att_loss"] == pytest.approx(r["token_loss"] + 0.1 * r["length_loss"], rel=1e-4) for r in train)
    assert valid and all(r["valid_decoded_utts"] == 4 and "valid_wer" in r for r in valid)  # NAT-decoded
    assert sorted(p.suffix for p in (trained.exp_dir / "attention").iterdir()) == [".png"] * len(valid)


@torch.no_grad()
def test_output_has_the_predicted_length(speech, trained):
    model, tokenizer = speech.model, speech.tokenizer
    assert isinstance(model, NATModel) and available_methods(model) == ["nat", "ctc_greedy", "ctc_prefix_beam"]
    feats, lengths = _features(speech, trained.test_wavs)
    enc, enc_lengths = model.encode(feats, lengths)
    prefix = torch.full((len(lengths), 1), tokenizer.token_to_id("<asr>"))
    length_logp = F.log_softmax(model.decoder.length_logits(enc, enc_lengths, prefix), dim=-1)
    options = DecodeOptions(method="nat", task="asr")
    one = decode(model, feats, lengths, options, tokenizer=tokenizer)
    three = decode(model, feats, lengths, options.replace(nat_length_candidates=3, nbest=3, beam_size=3,
                                                          ctc_weight=0.0), tokenizer=tokenizer)
    short = decode(model, feats, lengths, options.replace(max_len=2), tokenizer=tokenizer)
    blocked = sorted(tokenizer.skipped_ids)
    for b in range(len(lengths)):
        allowed = length_logp[b, : int(enc_lengths[b]) + 1]  # at most max_len_ratio (1) x encoder frames tokens
        predicted = int(allowed.argmax())
        assert len(one[b].tokens) == predicted and len(one[b].token_logprobs) == predicted
        # The one pass: L queries, each position its most probable token (special tokens excluded).
        logits = model.decoder(prefix[b : b + 1], torch.tensor([predicted]), max(predicted, 1), enc[b : b + 1],
                               enc_lengths[b : b + 1])[0, :predicted].log_softmax(dim=-1)
        logits[:, blocked] = float("-inf")
        assert list(one[b].tokens) == logits.argmax(dim=-1).tolist()
        assert one[b].score == pytest.approx(float(logits.max(dim=-1).values.sum() + length_logp[b, predicted]),
                                             abs=1e-4)
        # k candidates: the k most probable lengths, each hypothesis exactly as long as its candidate.
        top = set(allowed.topk(3).indices.tolist())
        assert {len(h.tokens) for h in three[b].nbest} == top and three[b].tokens == one[b].tokens
        assert len(short[b].tokens) == int(length_logp[b, :3].argmax())  # max_len=2: lengths 0..2


@torch.no_grad()
def test_candidates_are_rescored_with_ctc(speech, trained):
    model, tokenizer = speech.model, speech.tokenizer
    feats, lengths = _features(speech, trained.test_wavs[:4])
    options = DecodeOptions(method="nat", task="asr", nat_length_candidates=4, beam_size=4, nbest=4, ctc_weight=0.5)
    results = decode(model, feats, lengths, options, tokenizer=tokenizer)
    enc, enc_lengths = model.encode(feats, lengths)
    prefix = torch.full((len(lengths), 1), tokenizer.token_to_id("<asr>"))
    length_logp = F.log_softmax(model.decoder.length_logits(enc, enc_lengths, prefix), dim=-1)
    ctc_logp = model.ctc.log_probs(enc)
    nontrivial = 0
    for b, result in enumerate(results):
        x = ctc_logp[b, : enc_lengths[b]].double().tolist()
        expected = []
        for hyp in result.nbest:
            nat = sum(hyp.token_logprobs) + float(length_logp[b, len(hyp.tokens)])
            expected.append(0.5 * nat + 0.5 * ctc_prefix_scores(x, list(hyp.tokens))[1])
        assert [h.score for h in result.nbest] == pytest.approx(expected, abs=1e-3)
        # Best first; candidates that CTC finds impossible (too long for the frames) are left out.
        assert expected == sorted(expected, reverse=True) and all(e > float("-inf") for e in expected)
        nontrivial += len(result.nbest) > 1
    assert nontrivial >= 3
    # Lengths from CTC: the candidates are the lengths nearest to the CTC greedy output's.
    greedy = decode(model, feats, lengths, DecodeOptions(method="ctc_greedy"), tokenizer=tokenizer)
    near = decode(model, feats, lengths, options.replace(nat_length_source="ctc", nat_length_candidates=1, nbest=1),
                  tokenizer=tokenizer)
    assert [len(r.tokens) for r in near] == [min(len(g.tokens), 12) for g in greedy]
    with pytest.raises(ValueError, match="ctc_weight=0.5 with task='st': NAT length candidates would be rescored"):
        decode(model, feats, lengths, options.replace(task="st"), tokenizer=tokenizer)


def test_first_eos_cut():
    tokens = torch.tensor([[5, 6, EOS_ID, 7, EOS_ID], [5, 5, 5, 5, 5], [EOS_ID, 5, 5, 5, 5], [5, 6, 7, EOS_ID, 5]])
    lengths, ended = first_eos_cut(tokens, torch.tensor([5, 5, 5, 2]))
    assert lengths.tolist() == [2, 5, 0, 2] and ended.tolist() == [True, False, True, False]


@torch.no_grad()
def test_eos_mode_cuts_at_the_first_eos():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=12, input_dim=20, specaug=None, ctc_weight=0.0,
                         encoder=EncoderConfig(d_model=32, n_heads=2, n_layers=1, ffn_dim=64, subsampling_channels=8),
                         decoder=DecoderConfig(kind="nat", d_model=32, n_heads=2, n_layers=1, ffn_dim=64,
                                               nat=NATConfig(max_len=10, length_mode="eos")))
    model = build_model(config).eval()
    assert model.decoder.length_predictor is None
    with torch.no_grad():
        model.decoder.output.bias[EOS_ID] = 0.5  # the first utterance's output starts with <eos>, no other has one
    tokenizer = asr.text.train_tokenizer(["abcdefg"])
    feats, lengths = torch.randn(6, 90, 20), torch.tensor([90, 80, 70, 60, 50, 40])
    results = decode(model, feats, lengths, DecodeOptions(method="nat"), tokenizer=tokenizer)
    limited = decode(model, feats, lengths, DecodeOptions(method="nat", max_len=3), tokenizer=tokenizer)
    enc, enc_lengths = model.encode(feats, lengths)
    logp = model.decoder(torch.zeros(6, 0, dtype=torch.long), torch.full((6,), 10), 10, enc, enc_lengths)
    logp = logp.log_softmax(dim=-1)
    logp[:, :, sorted(tokenizer.skipped_ids - {EOS_ID})] = float("-inf")
    cut = 0
    for b, result in enumerate(results):
        best = logp[b].argmax(dim=-1).tolist()
        first = best.index(EOS_ID) if EOS_ID in best else 10
        n = min(first, int(enc_lengths[b]))  # at most max_len_ratio (1) x encoder frames tokens
        ended = first == n < 10
        cut += ended
        assert list(result.tokens) == best[:n] and len(result.token_logprobs) == n + ended
        assert result.score == pytest.approx(float(logp[b].max(dim=-1).values[: n + ended].sum()), abs=1e-4)
        assert list(limited[b].tokens) == best[: min(n, 3)]
    assert cut == 1
    with pytest.raises(ValueError, match="no length predictor"):
        model.decoder.length_logits(enc, enc_lengths, torch.zeros(6, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="nat_length_candidates=2: this NAT model cuts its output at the first <eos>"):
        decode(model, feats, lengths, DecodeOptions(method="nat", nat_length_candidates=2), tokenizer=tokenizer)
    with pytest.raises(ValueError, match="nat_length_source='ctc': this NAT model cuts"):
        decode(model, feats, lengths, DecodeOptions(method="nat", nat_length_source="ctc"), tokenizer=tokenizer)


def test_transcribe_and_cli(speech, trained, capsys):
    wavs = trained.test_wavs[:3]
    options = DecodeOptions(method="nat", task="asr")
    api = [speech.transcribe(str(w), options).text for w in wavs]
    feats, lengths = _features(speech, wavs)
    assert api == [r.text for r in decode(speech.model, feats, lengths, options, tokenizer=speech.tokenizer)]
    fast = asr.load_model(trained.model_dir, dtype="bfloat16")  # the length predictor and rescoring run in it
    assert all(isinstance(fast.transcribe(str(w), options).text, str) for w in wavs)
    assert transcribe_main([str(trained.model_dir), *map(str, wavs), "--method", "nat", "--task", "asr",
                            "--quiet"]) == 0
    assert [line.partition(" ")[2] for line in capsys.readouterr().out.splitlines()] == api
    assert transcribe_main([str(trained.model_dir), str(wavs[0]), "--task", "asr"]) == 2
    assert ("method='attention' needs an autoregressive attention decoder, but this model's decoder is 'nat' "
            "(non-autoregressive); this model decodes with: nat, ctc_greedy, ctc_prefix_beam"
            ) in capsys.readouterr().err


def test_config_and_errors():
    config = yaml.safe_load((CONF / "model" / "nat_small.yaml").read_text())
    model_config = ModelConfig.from_dict({**config, "vocab_size": 40})
    assert model_config.decoder.nat == NATConfig(max_len=160, length_mode="predict", length_weight=0.1)
    assert ModelConfig.from_dict(model_config.to_dict()) == model_config
    assert model_config.encoder == ModelConfig.from_dict(
        {**yaml.safe_load((CONF / "model" / "transformer_small.yaml").read_text()), "vocab_size": 40}).encoder
    with pytest.raises(ValueError, match="NATConfig.length_mode: expected 'predict' or 'eos', got 'guess'"):
        ModelConfig.from_dict({**config, "vocab_size": 40, "decoder": {"kind": "nat", "nat": {"length_mode": "guess"}}})
    small = {"vocab_size": 12, "input_dim": 20, "encoder": EncoderConfig(d_model=32, n_heads=2, n_layers=1, ffn_dim=64),
             "decoder": DecoderConfig(kind="nat", d_model=32, n_heads=2, n_layers=1, ffn_dim=64)}
    with pytest.raises(ValueError, match="decoder kind 'nat' needs ctc_weight < 1, got 1.0"):
        build_model(ModelConfig(**small, ctc_weight=1.0))
    with pytest.raises(ValueError, match="sampling_prob=0.2: scheduled sampling needs an autoregressive decoder"):
        build_model(ModelConfig(**small, sampling_prob=0.2))
    no_ctc = build_model(ModelConfig(**small, ctc_weight=0.0))
    no_ctc.set_sampling_prob(0.0)  # what the trainer sets without scheduled sampling
    with pytest.raises(ValueError, match=r"scheduled sampling \(probability 0.1\) needs an autoregressive decoder"):
        no_ctc.set_sampling_prob(0.1)
    tokenizer = asr.text.train_tokenizer(["abcdefg"])
    with pytest.raises(ValueError, match="nat_length_source='ctc': this model has no CTC head"):
        decode(no_ctc, torch.randn(1, 50, 20), torch.tensor([50]), DecodeOptions(method="nat", nat_length_source="ctc"),
               tokenizer=tokenizer)


@pytest.mark.parametrize("kind", ["nat", "maskctc"])
def test_recipe_config_selects_the_decoder_and_the_method(kind):
    """`asr-run recipe=synth model=<kind>_small decode.method=<kind>` composes into typed configs."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["recipe=synth", f"model={kind}_small", f"decode.method={kind}"])
    config = ExperimentConfig.from_hydra(OmegaConf.to_container(cfg, resolve=True))
    assert config.decode_options.method == kind and config.decode_options.task == "asr"
    model = build_model(ModelConfig.from_dict({**config.model, "vocab_size": 40, "input_dim": 80}))
    assert available_methods(model)[0] == kind
