"""Imported fairseq Speech2Text models compute what transformers' Speech2TextForConditionalGeneration computes.

transformers builds small random S2T models with a real SentencePiece tokenizer trained here on
FLEURS sentences, saves them with save_pretrained, and we import the directories with asr-import hf:
one with transformers' initialisation for the numbers, and one with init_std raised to 0.6 for the
searches (so that the tokens depend on the audio; its logits of order 10 differ by 2e-4 in fp32).
On real speech we check the features (Kaldi fbank + utterance CMVN, 1e-4), the encoder output of a
padded batch against each utterance alone (1e-4), the decoder's logits (1e-4), the final beams of
greedy and beam-5 search for a fixed number of tokens (transformers' min/max_new_tokens), with and
without a forced target-language token, and the tokenizer's ids and text.

As for Whisper (tests/test_import_whisper.py), hypotheses cut at the length limit are ranked by
transformers without the forced final </s>: the beams are equal, and so is the best hypothesis once
ranked without that term.
"""

from __future__ import annotations

import io
import json

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install asr[import])")

import sentencepiece as spm  # noqa: E402

import asr  # noqa: E402
from asr.audio import load_audio  # noqa: E402
from asr.cli.import_model import main as import_main  # noqa: E402
from asr.decode import DecodeOptions  # noqa: E402

TOKENS = 12
LANGUAGES = ("de", "fr")


@pytest.fixture(scope="module")
def waves(shared_dir) -> list[torch.Tensor]:
    paths = sorted((shared_dir / "data" / "real" / "librispeech").glob("*.flac"))[:2]
    return [load_audio(path, 16000) for path in paths]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shared_dir):
    """A random transformers S2T model with its tokenizer and feature extractor, and our import of it."""
    folder = tmp_path_factory.mktemp("s2t")
    hf_dir = folder / "hf"
    hf_dir.mkdir()
    texts = [p.read_text(encoding="utf-8").strip() for p in sorted((shared_dir / "data" / "real").glob("*/*.txt"))]
    model_file = io.BytesIO()
    # fairseq's S2T recipes train SentencePiece with these ids, so its ids are the dictionary's.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(t.lower() for t in texts), model_writer=model_file, model_type="unigram",
        vocab_size=150, hard_vocab_limit=False, unk_id=3, bos_id=0, eos_id=2, pad_id=1,
        user_defined_symbols=[f"<lang:{lang}>" for lang in LANGUAGES], minloglevel=2)
    (hf_dir / "sentencepiece.bpe.model").write_bytes(model_file.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model_file.getvalue())
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    (hf_dir / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tokenizer = transformers.Speech2TextTokenizer(str(hf_dir / "vocab.json"), str(hf_dir / "sentencepiece.bpe.model"),
                                                  do_lower_case=True)
    tokenizer.save_pretrained(hf_dir)
    transformers.Speech2TextFeatureExtractor().save_pretrained(hf_dir)
    extractor = transformers.Speech2TextFeatureExtractor.from_pretrained(hf_dir)
    models = {}
    for name, init_std in (("search", 0.6), ("default", 0.02)):
        torch.manual_seed(0)
        config = transformers.Speech2TextConfig(
            vocab_size=len(vocab), d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, conv_channels=96,
            max_source_positions=1500, init_std=init_std)
        model = transformers.Speech2TextForConditionalGeneration(config).eval()
        model.save_pretrained(hf_dir)
        assert import_main(["hf", str(hf_dir), str(folder / name)]) == 0
        models[name] = model, asr.load_model(folder / name)
    return models, tokenizer, extractor


def our_features(speech, waves):
    padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    return speech.features(padded, torch.tensor([len(w) for w in waves]))


def test_features_encoder_and_logits_match(reference, waves):
    models, _, extractor = reference
    model, speech = models["default"]  # transformers' own initialisation: logits of order 1
    assert speech.feature_config.kind == "fbank" and speech.feature_config.utterance_cmvn
    feats, lengths = our_features(speech, waves)  # a padded batch of two lengths
    expected = [extractor(w.numpy(), sampling_rate=16000, return_tensors="pt").input_features[0] for w in waves]
    for i, one in enumerate(expected):
        assert one.shape[0] == lengths[i] and (feats[i, : lengths[i]] - one).abs().max() < 1e-4
    # The networks compared on the same input (a 1e-6 change of the features moves the output more).
    batch = torch.nn.utils.rnn.pad_sequence(expected, batch_first=True)
    with torch.no_grad():
        enc, enc_lengths = speech.model.encode(batch, lengths)
        for i, one in enumerate(expected):
            expected_enc = model.model.encoder(one[None]).last_hidden_state[0]
            assert expected_enc.shape[0] == enc_lengths[i]
            assert (enc[i, : enc_lengths[i]] - expected_enc).abs().max() < 1e-4  # padding does not leak
            tokens = torch.tensor([[2, 10, 20, 30]])
            logits = model(input_features=one[None], decoder_input_ids=tokens).logits
            ours = speech.model.decoder(tokens, enc[i : i + 1, : enc_lengths[i]], enc_lengths[i : i + 1])
            assert (ours - logits).abs().max() < 1e-4


@pytest.mark.parametrize("language", [None, "fr"])
def test_greedy_and_beam_match_transformers(reference, waves, language):
    models, tokenizer, extractor = reference
    model, speech = models["search"]  # weights of std 0.6: the tokens depend on the audio
    feats, lengths = our_features(speech, waves)
    prefix = [2] + ([tokenizer.convert_tokens_to_ids(f"<lang:{language}>")] if language else [])
    best = {}
    for beam in (1, 5):
        results = speech.decode(feats, lengths, DecodeOptions(beam_size=beam, nbest=beam, min_len=TOKENS,
                                                              max_len=TOKENS, target_lang=language))
        for i, wave in enumerate(waves):
            inputs = extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt")
            with torch.no_grad():
                out = model.generate(inputs.input_features, decoder_input_ids=torch.tensor([prefix]),
                                     min_new_tokens=TOKENS, max_new_tokens=TOKENS, num_beams=beam,
                                     num_return_sequences=beam, do_sample=False, suppress_tokens=[0, 1])
            expected = [row[len(prefix):] for row in out.tolist()]
            ours = results[i]
            assert sorted(expected) == sorted(list(h.tokens) for h in ours.nbest)
            assert list(max(ours.nbest, key=lambda h: sum(h.token_logprobs[:-1])).tokens) == expected[0]
            best[beam, i] = expected[0]
    assert best[1, 0] != best[1, 1]  # the output depends on the audio


def test_tokenizer_matches_transformers(reference, shared_dir):
    models, tokenizer, _ = reference
    ours = models["search"][1].tokenizer
    assert (ours.sos_id, ours.eos_id, ours.pad_id, ours.unk_id) == (2, 2, 1, 3)
    assert ours.vocab_size == len(tokenizer)
    texts = [p.read_text(encoding="utf-8") for p in sorted((shared_dir / "data" / "real" / "fleurs").glob("*.txt"))]
    for text in texts[:20]:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert ours.encode(text) == ids
        known = [i for i in ids if i != ours.unk_id]  # transformers drops <unk>; we show it, as our tokenizers do
        assert ours.decode([2, *known, 2]) == tokenizer.decode(known, skip_special_tokens=True)
    assert "⁇" in ours.decode([ours.unk_id])
    assert ours.prefix_ids("st", "de") == [tokenizer.convert_tokens_to_ids("<lang:de>")]
    assert ours.prefix_ids(None, None) == []
    with pytest.raises(ValueError, match="no <lang:it> token"):
        ours.prefix_ids(None, "it")


def test_unsupported_variants_are_errors(reference, tmp_path, capsys):
    model = reference[0]["search"][0]
    bad = transformers.Speech2TextConfig(**{**model.config.to_dict(), "conv_kernel_sizes": [3, 3]})
    transformers.Speech2TextForConditionalGeneration(bad).save_pretrained(tmp_path)
    assert import_main(["hf", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "unsupported Speech2Text variant" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}), encoding="utf-8")
    assert import_main(["hf", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "model_type 'bert' is not supported" in capsys.readouterr().err
