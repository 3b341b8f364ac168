"""Mask-CTC (decoder kind "maskctc"): the uniform masking of training targets, the easy-first filling
schedule, decoding that follows it pass by pass, and a model trained here with the real trainer, decoded
through asr.decode.decode and asr-transcribe --method maskctc."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import asr
from asr.cli.transcribe import main as transcribe_main
from asr.decode import DecodeOptions, available_methods, decode
from asr.decode.maskctc import fill_schedule, pass_quota
from asr.model import BLANK_ID, IGNORE_ID, PAD_ID, EncoderConfig, MaskCTCModel, ModelConfig, build_model
from asr.model.io import save_model_dir
from asr.model.maskctc import mask_uniform
from tests.decoder_helper import tiny_decoder, train_tiny
from tests.test_ctc_decode import _features

CONF = Path(__file__).resolve().parents[1] / "conf"
MASK = 20


def test_mask_uniform_masks_one_to_n_tokens():
    targets = torch.tensor([[5, 6, 7, 8], [9, -1, -1, -1], [-1, -1, -1, -1]])
    lengths = torch.tensor([4, 1, 0])
    prefix = torch.tensor([[11], [11], [11]])
    out = mask_uniform(targets, lengths, prefix, MASK, torch.Generator().manual_seed(0))
    assert out.lengths.tolist() == [5, 2, 1] and out.num_masked.tolist()[1:] == [1, 0]
    assert out.inputs[:, 0].tolist() == [11, 11, 11] and (out.outputs[:, 0] == IGNORE_ID).all()  # prefix: context
    for b in range(3):
        n, body, goal = int(lengths[b]), out.inputs[b, 1:], out.outputs[b, 1:]
        masked = body == MASK
        assert int(masked.sum()) == int(out.num_masked[b]) and not masked[n:].any()
        assert (1 <= masked.sum() <= n) or n == 0
        assert torch.equal(goal[masked], targets[b][masked]) and (goal[~masked] == IGNORE_ID).all()
        assert torch.equal(body[:n][~masked[:n]], targets[b, :n][~masked[:n]]) and (body[n:] == PAD_ID).all()


def test_mask_counts_and_positions_are_uniform():
    draws = 4000
    out = mask_uniform(torch.arange(5, 9).repeat(draws, 1), torch.full((draws,), 4), torch.zeros(draws, 0).long(),
                       MASK, torch.Generator().manual_seed(1))
    counts = torch.bincount(out.num_masked, minlength=5).tolist()
    assert counts[0] == 0 and all(abs(c - draws / 4) < 120 for c in counts[1:])  # 1..4 equally likely (~4 sigma)
    per_position = (out.inputs == MASK).float().mean(dim=0)
    assert torch.allclose(per_position, torch.full((4,), 2.5 / 4), atol=0.04)  # E[count] / n, for every position


def test_fill_schedule():
    passes, per_pass = fill_schedule(torch.tensor([7, 2, 0, 10]), iterations=3)
    assert passes.tolist() == [3, 2, 0, 3] and per_pass.tolist() == [2, 1, 0, 3]
    quotas = [pass_quota(t, passes, per_pass, width=99).tolist() for t in range(3)]
    # 7 masks in 3 passes: 2, 2, then the 3 left; 2 masks: 1 and 1; 10 masks: 3, 3, then 4.
    assert quotas == [[2, 1, 0, 3], [2, 99, 0, 3], [99, 0, 0, 99]]


@pytest.fixture(scope="module")
def trained(shared_dir, tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("maskctc") / "exp", shared_dir, tiny_decoder("maskctc"))


def test_trains_with_the_trainer(trained):
    records = [json.loads(line) for line in (trained.exp_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["event"] == "train"]
    valid = [r for r in records if r["event"] == "valid"]
    assert trained.result.step == 6 and all({"att_loss", "acc", "ctc_loss"} <= set(r) for r in train)
    assert all(r["loss"] == pytest.approx(0.3 * r["ctc_loss"] + 0.7 * r["att_loss"], rel=1e-4) for r in train)
    assert valid and all(r["valid_decoded_utts"] == 4 and "valid_wer" in r for r in valid)  # Mask-CTC-decoded
    assert len(list((trained.exp_dir / "attention").glob("*.png"))) == len(valid)


@torch.no_grad()
def test_decoding_fills_the_most_confident_masks_first():
    """With random weights: CTC emits many tokens, so there is plenty to mask (a barely trained one emits none)."""
    torch.manual_seed(0)
    tokenizer = asr.text.train_tokenizer(["abcdefghij"], extra_tokens=("<asr>",))
    model = build_model(ModelConfig(vocab_size=tokenizer.vocab_size, input_dim=20, specaug=None,
                                    encoder=EncoderConfig(d_model=32, n_heads=2, n_layers=1, ffn_dim=64),
                                    decoder=tiny_decoder("maskctc", d_model=32, n_heads=2))).eval()
    assert available_methods(model) == ["maskctc", "ctc_greedy", "ctc_prefix_beam"]
    feats, lengths = torch.randn(4, 60, 20), torch.tensor([60, 44, 30, 12])
    calls = []
    hook = model.decoder.register_forward_hook(lambda module, args, output: calls.append((args[0], output)))
    try:
        greedy = decode(model, feats, lengths, DecodeOptions(method="ctc_greedy"), tokenizer=tokenizer)
        kept = decode(model, feats, lengths, DecodeOptions(method="maskctc", maskctc_threshold=0.0, task="asr"),
                      tokenizer=tokenizer)
        assert calls == [] and [r.tokens for r in kept] == [g.tokens for g in greedy]  # nothing masked
        # Threshold 1: every token is masked and the decoder writes them all, in 3 passes.
        results = decode(model, feats, lengths, DecodeOptions(method="maskctc", maskctc_threshold=1.0,
                                                              maskctc_iterations=3, task="asr"), tokenizer=tokenizer)
    finally:
        hook.remove()
    mask_id, blocked = model.decoder.mask_id, sorted(tokenizer.skipped_ids)
    assert len(calls) == min(3, max(len(g.tokens) for g in greedy))
    inputs = [c[0][:, 1:] for c in calls] + [torch.tensor([list(r.tokens) + [0] * (calls[0][0].size(1) - 1 -
                                                                                  len(r.tokens)) for r in results])]
    for b, (result, g) in enumerate(zip(results, greedy)):
        n = len(g.tokens)
        assert len(result.tokens) == n and len(result.token_logprobs) == n
        passes, per_pass = min(3, n), n // max(min(3, n), 1)
        masks = [int((x[b, :n] == mask_id).sum()) for x in inputs]
        assert masks == [max(n - t * per_pass, 0) if t < passes else 0 for t in range(len(inputs))]
        for t in range(passes):
            logp = calls[t][1][b, 1 : n + 1].log_softmax(dim=-1)
            logp[:, blocked] = float("-inf")
            best, predicted = logp.max(dim=-1)
            still = inputs[t][b, :n] == mask_id
            filled = still & (inputs[t + 1][b, :n] != mask_id)
            # The masks filled in this pass are the ones the decoder was surest of, with its choice.
            assert float(best[filled].min()) >= max(best[still & ~filled].tolist(), default=float("-inf"))
            assert torch.equal(inputs[t + 1][b, :n][filled], predicted[filled])
            for position in filled.nonzero().flatten().tolist():
                assert result.token_logprobs[position] == pytest.approx(float(best[position]), abs=1e-5)
        assert result.score == pytest.approx(sum(result.token_logprobs), abs=1e-4)


def test_transcribe_and_cli(trained, tmp_path, capsys):
    # Six updates teach CTC only to say <blank>: push the blank down so that there are tokens to refine.
    speech = asr.load_model(trained.model_dir)
    with torch.no_grad():
        speech.model.ctc.proj.bias[BLANK_ID] -= 10.0
    model_dir = save_model_dir(tmp_path / "model", speech.model, speech.tokenizer, speech.feature_config)
    wavs = trained.test_wavs[:3]
    options = DecodeOptions(method="maskctc", task="asr")
    api = [speech.transcribe(str(w), options) for w in wavs]
    feats, lengths = _features(speech, wavs)
    assert [r.tokens for r in api] == [r.tokens for r in decode(speech.model, feats, lengths, options,
                                                                tokenizer=speech.tokenizer)]
    fast = asr.load_model(model_dir, dtype="bfloat16")
    assert [len(fast.transcribe(str(w), options).tokens) > 0 for w in wavs] == [len(r.tokens) > 0 for r in api]
    greedy = decode(speech.model, feats, lengths, DecodeOptions(method="ctc_greedy"), tokenizer=speech.tokenizer)
    assert all(len(a.tokens) == len(g.tokens) > 0 for a, g in zip(api, greedy))  # refined, as long as CTC's
    assert [a.tokens for a in api] != [g.tokens for g in greedy]
    assert transcribe_main([str(model_dir), *map(str, wavs), "--method", "maskctc", "--task", "asr", "--quiet"]) == 0
    assert [line.partition(" ")[2] for line in capsys.readouterr().out.splitlines()] == [r.text for r in api]
    assert transcribe_main([str(model_dir), str(wavs[0]), "--method", "nat"]) == 2
    assert "method='nat' needs a model trained with decoder kind 'nat'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="method='maskctc' with task='st'"):
        decode(speech.model, feats, lengths, options.replace(task="st", ctc_weight=0.0), tokenizer=speech.tokenizer)


def test_config_and_errors():
    config = yaml.safe_load((CONF / "model" / "maskctc_small.yaml").read_text())
    model = build_model(ModelConfig.from_dict({**config, "vocab_size": 40}))
    assert isinstance(model, MaskCTCModel) and model.decoder.mask_id == 40
    # <mask> has its own vector: the embedding and the output layer keep the vocabulary's size.
    assert model.decoder.embed.weight.shape[0] == 40 and model.decoder.output.out_features == 40
    small = {"vocab_size": 12, "input_dim": 20, "encoder": EncoderConfig(d_model=32, n_heads=2, n_layers=1, ffn_dim=64),
             "decoder": tiny_decoder("maskctc")}
    with pytest.raises(ValueError, match=r"decoder kind 'maskctc' needs 0 < ctc_weight < 1, got 0.0"):
        build_model(ModelConfig(**small, ctc_weight=0.0))
    with pytest.raises(ValueError, match="decoder kind 'maskctc' needs ctc_weight < 1, got 1.0"):
        build_model(ModelConfig(**small, ctc_weight=1.0))
    for bad, match in (({"maskctc_threshold": 1.5}, "maskctc_threshold=1.5"),
                       ({"maskctc_iterations": 0}, "maskctc_iterations=0")):
        with pytest.raises(ValueError, match=f"DecodeOptions.{match}"):
            DecodeOptions(**bad)
