"""The Transformer LM: incremental decoding, training with the speech Trainer on text, its directory."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from asr.data import DynamicBatchSampler, collate
from asr.data.text_dataset import TextDataset
from asr.model.config import IGNORE_ID
from asr.model.lm import LMConfig, TransformerLM, build_lm, check_same_tokenizer, load_lm, save_lm_dir
from asr.text import train_tokenizer
from asr.train import OptimConfig, Trainer, TrainerConfig

SENTENCES = ["turn on the light", "turn off the light", "open the door", "close the door", "turn on the radio"]


@pytest.mark.parametrize("pre_ln", [True, False])
@torch.no_grad()
def test_incremental_steps_match_teacher_forcing(pre_ln):
    torch.manual_seed(0)
    lm = TransformerLM(LMConfig(vocab_size=12, d_model=32, n_heads=4, n_layers=2, ffn_dim=64,
                                normalize_before=pre_ln)).eval()
    tokens = torch.randint(5, 12, (3, 7))
    expected = lm.logits(tokens)
    state = lm.init_state(3)
    steps = []
    for t in range(7):
        logits, state = lm.step(tokens[:, t], state)
        steps.append(logits)
    assert torch.allclose(torch.stack(steps, dim=1), expected, atol=1e-5) and state.offset == 7
    # Reordering the caches follows the hypotheses.
    state = lm.reorder_state(state, torch.tensor([2, 2, 0]))
    logits, _ = lm.step(torch.tensor([5, 6, 7]), state)
    full = lm.logits(torch.cat([tokens[[2, 2, 0]], torch.tensor([[5], [6], [7]])], dim=1))[:, -1]
    assert torch.allclose(logits, full, atol=1e-5)
    # sequence_logprob: log p(y, <eos>) from teacher forcing, padding ignored.
    targets = torch.tensor([[5, 6, 7], [8, 9, IGNORE_ID]])
    lengths = torch.tensor([3, 2])
    logp = lm.logits(torch.tensor([[2, 5, 6, 7], [2, 8, 9, 4]])).log_softmax(-1)
    expected = [logp[0, [0, 1, 2, 3], [5, 6, 7, 3]].sum(), logp[1, [0, 1, 2], [8, 9, 3]].sum()]
    assert lm.sequence_logprob(targets, lengths) == pytest.approx([float(e) for e in expected], abs=1e-5)


def test_text_dataset_batches_for_the_trainer(tmp_path):
    tokenizer = train_tokenizer(SENTENCES)
    path = tmp_path / "text.txt"
    path.write_text("open the door\n\n  \nturn ON the light!\n", encoding="utf-8")
    dataset = TextDataset.from_file(path, tokenizer)
    assert len(dataset) == 2 and dataset.ids == ["text.txt:1", "text.txt:4"]
    assert dataset.lengths == [len("open the door") + 1, len("turn on the light") + 1]
    batch = collate([dataset[0], dataset[1]])
    assert batch.feats.shape == (2, 0, 0) and batch.feat_lengths.tolist() == [0, 0]
    assert tokenizer.decode(batch.targets[1, : batch.target_lengths[1]].tolist()) == "turn on the light"
    assert batch.targets[0, -1] == IGNORE_ID and batch.prefix.shape == (2, 0)
    (tmp_path / "blank.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match="blank.txt: no text"):
        TextDataset.from_file(tmp_path / "blank.txt", tokenizer)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        TextDataset.from_file(tmp_path / "missing.txt", tokenizer)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt: not UTF-8"):
        TextDataset.from_file(tmp_path / "latin1.txt", tokenizer)
    with pytest.raises(ValueError, match="1 ids for 2 texts"):
        TextDataset(["a", "b"], tokenizer, ids=["x"])


def test_lm_trains_with_the_trainer_and_round_trips(tmp_path):
    torch.set_num_threads(1)
    try:
        tokenizer = train_tokenizer(SENTENCES)
        train = TextDataset(SENTENCES * 8, tokenizer)
        valid = TextDataset(SENTENCES, tokenizer)
        sampler = DynamicBatchSampler(train.lengths, max_batch_size=8, num_buckets=1, seed=0)
        torch.manual_seed(0)
        lm = build_lm(LMConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_heads=4, n_layers=1, ffn_dim=64,
                               dropout=0.0))
        config = TrainerConfig(max_steps=60, valid_every_steps=20, valid_decode_utts=0, log_every_steps=5,
                               progress_bar=False, plot_attention=False)
        result = Trainer(lm, train, sampler, valid, config, OptimConfig(lr=1e-2, warmup_steps=10),
                         tmp_path / "exp").fit()
    finally:
        torch.set_num_threads(2)
    assert result.step == 60 and result.best_metric is not None
    lm.eval()
    targets = torch.tensor([tokenizer.encode("open the door")])
    nll = -float(lm.sequence_logprob(targets, torch.tensor([targets.size(1)]))) / (targets.size(1) + 1)
    assert nll < 1.0  # per token: far below log(vocab) = 2.8 of an untrained model
    assert result.best_metric < 1.0

    save_lm_dir(tmp_path / "lm", lm, tokenizer)
    loaded = load_lm(tmp_path / "lm", tokenizer=tokenizer)
    tokens = torch.tensor([[2, *tokenizer.encode("turn on")]])
    assert torch.equal(loaded.logits(tokens), lm.logits(tokens)) and not loaded.training
    other = train_tokenizer(["something else entirely"])
    with pytest.raises(ValueError, match="LM's tokenizer has .* tokens, the model's"):
        load_lm(tmp_path / "lm", tokenizer=other)
    with pytest.raises(ValueError, match="token .* for the LM but"):
        check_same_tokenizer(tokenizer, _swap_two_units(tokenizer))


def _swap_two_units(tokenizer):
    """The same units as `tokenizer` with the first two ordinary ones swapped."""
    from asr.text import CharTokenizer

    units = list(tokenizer.tokens[5:])
    units[0], units[1] = units[1], units[0]
    return CharTokenizer(units)


def test_lm_config_and_directory_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown key 'd_modle'"):
        LMConfig.from_dict({"vocab_size": 10, "d_modle": 32})
    with pytest.raises(ValueError, match="LMConfig.vocab_size"):
        LMConfig(vocab_size=3)
    with pytest.raises(ValueError, match="LMConfig.d_model: expected a multiple of n_heads"):
        LMConfig(vocab_size=10, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="unknown language model kind 'lstm'"):
        build_lm(LMConfig(vocab_size=10, kind="lstm"))
    with pytest.raises(FileNotFoundError, match="language-model directory"):
        load_lm(tmp_path)
    (tmp_path / "config.yaml").write_text("lm: [1, 2]\n")
    with pytest.raises(ValueError, match="expected a mapping with an 'lm' section"):
        load_lm(tmp_path)
    (tmp_path / "config.yaml").write_text("lm: {vocab_size: 10}\nformat_version: 9\n")
    with pytest.raises(ValueError, match="format_version 9 is newer"):
        load_lm(tmp_path)
    (tmp_path / "config.yaml").write_text("lm: {vocab_size: 10\n")
    with pytest.raises(ValueError, match="config.yaml: not valid YAML"):
        load_lm(tmp_path)
    (tmp_path / "config.yaml").write_text("lm: {vocab_size: 10, n_layers: 0}\n")
    with pytest.raises(ValueError, match=r"config.yaml: LMConfig.n_layers"):
        load_lm(tmp_path)
    tokenizer = train_tokenizer(["abc"])
    with pytest.raises(ValueError, match="the LM has 10 tokens, the tokenizer 8"):
        save_lm_dir(tmp_path / "x", build_lm(LMConfig(vocab_size=10, d_model=8, n_heads=2, n_layers=1, ffn_dim=8)),
                    tokenizer)
    lm = build_lm(LMConfig(vocab_size=8, d_model=8, n_heads=2, n_layers=1, ffn_dim=8))
    save_lm_dir(tmp_path / "y", lm, tokenizer)
    (tmp_path / "y" / "config.yaml").write_text((tmp_path / "y" / "config.yaml").read_text().replace(
        "d_model: 8", "d_model: 16").replace("ffn_dim: 8", "ffn_dim: 16"))
    with pytest.raises(ValueError, match="lm.pt: weights do not match config.yaml"):
        load_lm(tmp_path / "y")
    # A forward batch needs only targets, lengths and prefix (a Batch from asr.data.collate).
    batch = SimpleNamespace(targets=torch.tensor([[5, 6]]), target_lengths=torch.tensor([2]),
                            prefix=torch.zeros(1, 0, dtype=torch.long))
    out = lm(batch)
    assert set(out) == {"loss", "acc"} and out["loss"].dim() == 0
