"""Imported Whisper models compute what openai-whisper and transformers compute.

Pretrained weights cannot be downloaded here, so the reference code itself builds small random
Whisper models (the multilingual vocabulary of 51,865 tokens, d_model 64), saves them in its native
format, and we import them with asr-import. On real speech we then check: the log-mel features
(1e-4), the encoder output and the decoder's logits (1e-4), and the tokens of greedy and beam-5
search for the same prompt and a fixed number of tokens (<|endoftext|> suppressed, as
/work/shared/REFERENCES.md describes). Random weights are drawn so that the output depends on the
audio: a small token embedding (std 0.02) and, for openai-whisper's uninitialised decoder
positions, std 0.5.

Our search ranks hypotheses cut at the length limit by their score including the forced final
<eos>; openai-whisper and transformers leave that out. The beams are the same, so the best reference
hypothesis is our best once ranked without the <eos> term (and it is in our n-best list).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch

whisper = pytest.importorskip("whisper", reason="openai-whisper is not installed (pip install asr[import])")
pytest.importorskip("whisper.model", reason="the installed 'whisper' package is not openai-whisper")

import asr  # noqa: E402
from asr.audio import load_audio  # noqa: E402
from asr.cli.import_model import main as import_main  # noqa: E402
from asr.decode import DecodeOptions  # noqa: E402
from asr.decode.language import detect_language  # noqa: E402
from asr.features import FeatureConfig, FeatureExtractor  # noqa: E402
from asr.pretrained import import_hf, import_whisper  # noqa: E402
from asr.segment import SegmenterConfig  # noqa: E402
from asr.text import load_tokenizer  # noqa: E402
from asr.text.whisper import byte_level_alphabet  # noqa: E402
from asr.transcribe import transcribe  # noqa: E402

TOKENS = 12  # tokens decoded per utterance
DIMS = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 64, "n_audio_head": 4, "n_audio_layer": 2,
        "n_vocab": 51865, "n_text_ctx": 448, "n_text_state": 64, "n_text_head": 4, "n_text_layer": 2}


@pytest.fixture(scope="module")
def waves(shared_dir) -> list[torch.Tensor]:
    real = shared_dir / "data" / "real"
    return [load_audio(real / "misc" / "jfk.flac", 16000), load_audio(real / "fleurs" / "fleurs-de-000.ogg", 16000)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A random openai-whisper model, its checkpoint file, and our import of it (through the CLI)."""
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    model = Whisper(ModelDimensions(**DIMS)).eval()
    with torch.no_grad():
        model.decoder.token_embedding.weight.normal_(0.0, 0.02)
        model.decoder.positional_embedding.normal_(0.0, 0.5)
    folder = tmp_path_factory.mktemp("whisper")
    checkpoint = folder / "tiny-random.pt"
    torch.save({"dims": DIMS, "model_state_dict": model.state_dict()}, checkpoint)
    assert import_main(["whisper", str(checkpoint), str(folder / "model")]) == 0
    return model, checkpoint, asr.load_model(folder / "model")


def features(speech, waves):
    padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    return speech.features(padded, torch.tensor([len(w) for w in waves]))


def prompt(tokenizer, language: str = "en") -> list[int]:
    s = tokenizer.specials
    return [tokenizer.sos_id, s[f"<|{language}|>"], s["<|transcribe|>"], s["<|notimestamps|>"]]


def best_without_eos(result):
    """The n-best hypothesis with the highest log-probability of its tokens (the forced <eos> left out)."""
    return list(max(result.nbest, key=lambda h: sum(h.token_logprobs[:-1])).tokens)


def test_log_mel_matches_whisper(waves):
    for n_mels in (80, 128):
        extractor = FeatureExtractor(FeatureConfig(kind="whisper", n_mels=n_mels, n_fft=400))
        feats, lengths = extractor(torch.nn.utils.rnn.pad_sequence(waves, batch_first=True),
                                   torch.tensor([len(w) for w in waves]))
        assert feats.shape == (2, 3000, n_mels) and lengths.tolist() == [3000, 3000]
        for wave, ours in zip(waves, feats):
            expected = whisper.log_mel_spectrogram(whisper.pad_or_trim(wave), n_mels=n_mels).T
            assert (ours - expected).abs().max() < 1e-4
    with pytest.raises(ValueError, match="at most 30 s"):
        extractor.extract(torch.zeros(31 * 16000))


def test_encoder_and_logits_match(reference, waves):
    model, _, speech = reference
    assert speech.model.config.encoder.pos_enc == "whisper"  # the checkpoint's table is the formula
    feats, lengths = features(speech, waves)
    tokens = torch.tensor([prompt(speech.tokenizer) + [1000, 2000, 3000]] * 2)
    with torch.no_grad():
        expected_enc = model.encoder(feats.transpose(1, 2))
        enc, enc_lengths = speech.model.encode(feats, lengths)
        assert (enc - expected_enc).abs().max() < 1e-4
        expected = model.decoder(tokens, expected_enc)
        assert (speech.model.decoder(tokens, enc, enc_lengths) - expected).abs().max() < 1e-4
        # Incremental decoding: the first step after the prompt, as the search computes it.
        state = speech.model.decoder.init_state(enc, enc_lengths)
        for t in range(4):
            logits, state = speech.model.decoder.step(tokens[:, t], state)
        assert (logits - expected[:, 3]).abs().max() < 1e-4


def test_greedy_and_beam_match_whisper(reference, waves):
    model, _, speech = reference
    feats, lengths = features(speech, waves)
    mel = feats.transpose(1, 2)
    fixed = {"sample_len": TOKENS, "suppress_tokens": "-1,50257", "without_timestamps": True, "fp16": False}
    greedy = whisper.decode(model, mel, whisper.DecodingOptions(language="en", **fixed))
    ours = speech.decode(feats, lengths, DecodeOptions(beam_size=1, min_len=TOKENS, max_len=TOKENS, target_lang="en"))
    assert [list(r.tokens) for r in ours] == [r.tokens for r in greedy]
    assert len({tuple(r.tokens) for r in ours}) == 2  # the output depends on the audio
    # Without a language, the decoder picks it from the audio first, as openai-whisper does.
    with torch.no_grad():
        enc, enc_lengths = speech.model.encode(feats, lengths)
    language_ids = detect_language(speech.model, enc, enc_lengths, speech.tokenizer)
    assert language_ids.tolist() == model.detect_language(mel)[0].tolist()
    codes = [speech.tokenizer.id_to_token(i).strip("<|>") for i in language_ids.tolist()]
    detected = [speech.decode(feats[i : i + 1], lengths[i : i + 1], DecodeOptions(
        beam_size=1, min_len=TOKENS, max_len=TOKENS, target_lang=code))[0] for i, code in enumerate(codes)]
    ours = speech.decode(feats, lengths, DecodeOptions(beam_size=1, min_len=TOKENS, max_len=TOKENS))
    assert [r.tokens for r in ours] == [r.tokens for r in detected]
    # Beam 5 (openai-whisper's beam search takes one utterance at a time: its batched one fails).
    beam = speech.decode(feats, lengths, DecodeOptions(beam_size=5, nbest=5, min_len=TOKENS, max_len=TOKENS,
                                                       target_lang="en"))
    expected = whisper.decode(model, mel[0], whisper.DecodingOptions(language="en", beam_size=5, **fixed)).tokens
    assert best_without_eos(beam[0]) == expected
    assert expected in [list(h.tokens) for h in beam[0].nbest]
    assert beam[1].tokens != beam[0].tokens


def test_beam_renormalises_over_suppressed_tokens_as_whisper(reference, waves, tmp_path):
    """openai-whisper suppresses tokens in the logits, before its log-softmax: a suppressed token's
    probability does not lower a hypothesis' score. Made large here (their embeddings scaled up),
    it changes which beams win unless our search normalises the same way."""
    model, _, speech = reference
    boosted = copy.deepcopy(model)
    with torch.no_grad():
        boosted.decoder.token_embedding.weight[sorted(speech.tokenizer.suppressed_ids)] *= 30.0
    torch.save({"dims": DIMS, "model_state_dict": boosted.state_dict()}, tmp_path / "boosted.pt")
    converted = asr.load_model(import_whisper(tmp_path / "boosted.pt", tmp_path / "model"))
    feats, lengths = features(converted, waves)
    fixed = {"sample_len": TOKENS, "suppress_tokens": "-1,50257", "without_timestamps": True, "fp16": False}
    for i in range(len(waves)):
        ours = converted.decode(feats[i : i + 1], lengths[i : i + 1], DecodeOptions(
            beam_size=5, nbest=5, min_len=TOKENS, max_len=TOKENS, target_lang="en"))[0]
        expected = whisper.decode(boosted, feats[i].T, whisper.DecodingOptions(language="en", beam_size=5, **fixed))
        assert best_without_eos(ours) == expected.tokens
        # Its log-probability, as openai-whisper reports it (divided by the tokens + <|endoftext|>).
        best = next(h for h in ours.nbest if list(h.tokens) == expected.tokens)
        assert sum(best.token_logprobs[:-1]) / (TOKENS + 1) == pytest.approx(expected.avg_logprob, abs=1e-4)


def test_tokenizer_matches_openai_whisper(reference, shared_dir):
    from whisper.tokenizer import get_tokenizer

    _, _, speech = reference
    ours, ref = load_tokenizer(speech.directory), get_tokenizer(True, num_languages=99)
    assert ours.vocab_size == ref.encoding.n_vocab == 51865
    assert (ours.eos_id, ours.sos_id, ours.timestamp_begin) == (ref.eot, ref.sot, ref.timestamp_begin)
    assert ours.non_speech_ids == ref.non_speech_tokens
    assert sorted(ours.language_ids) == sorted(ref.all_language_tokens)
    texts = [p.read_text(encoding="utf-8") for p in sorted((shared_dir / "data" / "real" / "fleurs").glob("*.txt"))]
    for text in [*texts, " It's  ♪ 1234567!\n", "日本語のテキスト 🎉"]:
        ids = ref.encode(text)
        assert ours.encode_ordinary(text) == ids
        assert ours.decode(ids) == ref.decode(ids).strip()
    for i in (0, 220, 50256, ref.eot, ref.sot, ref.no_timestamps, ours.vocab_size - 1):
        assert ours.token_to_id(ours.id_to_token(i)) == i
    assert ours.prefix_ids("asr", "de") == [ref.special_tokens["<|de|>"], ref.transcribe, ref.no_timestamps]
    assert ours.prefix_ids("st", None) == [None, ref.translate, ref.no_timestamps]
    with pytest.raises(ValueError, match="not one of this Whisper model's languages"):
        ours.prefix_ids("asr", "xx")
    with pytest.raises(ValueError, match="into English only"):
        ours.prefix_ids("st", "de")


def test_fp16_checkpoint_keeps_the_rounded_positions(reference, waves, tmp_path):
    from whisper.model import ModelDimensions, Whisper

    model, _, speech = reference
    half = {name: tensor.half() for name, tensor in model.state_dict().items()}
    torch.save({"dims": DIMS, "model_state_dict": half}, tmp_path / "half.pt")
    rounded = Whisper(ModelDimensions(**DIMS)).eval()
    rounded.load_state_dict(half)  # what whisper.load_model does with an fp16 checkpoint
    converted = asr.load_model(import_whisper(tmp_path / "half.pt", tmp_path / "model"))
    assert converted.model.config.encoder.pos_enc == "learned"
    feats, lengths = features(converted, waves[:1])
    with torch.no_grad():
        expected = rounded.encoder(feats.transpose(1, 2))
        assert (converted.model.encode(feats, lengths)[0] - expected).abs().max() < 1e-4


def test_long_audio_is_cut_into_segments_of_at_most_30_s(reference, shared_dir):
    _, _, speech = reference
    path = shared_dir / "data" / "real" / "fleurs" / "fleurs-de-009.ogg"  # 43 s
    result = speech.transcribe(path, beam_size=1, max_len=4, target_lang="de")  # voice activity segments
    assert len(result.segments) >= 2 and all(s.end - s.start <= 30.0 for s in result.segments)
    assert result.tokens and not set(result.tokens) & speech.tokenizer.suppressed_ids
    # Fixed windows longer than Whisper's 30 s are shortened to 30 s: [0, 30] and [26, 43.4].
    windows = SegmenterConfig(method="window", max_segment_s=60.0, overlap_s=4.0)
    (result,) = transcribe(speech, [path], DecodeOptions(beam_size=1, max_len=4, target_lang="de"), segmenter=windows)
    assert [(s.start, s.end) for s in result.segments] == [(0.0, 28.0), (28.0, pytest.approx(43.4, abs=0.05))]


def test_import_errors_name_the_problem(reference, tmp_path, capsys):
    _, checkpoint, _ = reference
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    assert import_main(["whisper", str(tmp_path / "other.pt"), str(tmp_path / "out")]) == 2
    assert "not an openai-whisper checkpoint" in capsys.readouterr().err
    assert import_main(["whisper", str(checkpoint), str(tmp_path / "out"), "--vocab", str(tmp_path / "no")]) == 2
    assert "no such vocabulary file" in capsys.readouterr().err
    state = torch.load(checkpoint, weights_only=True)
    state["model_state_dict"]["decoder.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match=r"unexpected parameters \['decoder.extra.weight'\]"):
        import_whisper(tmp_path / "extra.pt", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="config.json: no such file"):
        import_hf(tmp_path, tmp_path / "out")


def write_hf_tokenizer(directory: Path) -> None:
    """transformers' tokenizer.json for Whisper (its BPE vocabulary and special tokens), written directly:
    building it with transformers needs APIs that change between its versions."""
    from whisper.tokenizer import get_encoding

    encoding = get_encoding("multilingual")
    alphabet = byte_level_alphabet()
    vocab = {"".join(alphabet[b] for b in encoding.decode_single_token_bytes(i)): i for i in range(encoding.eot_token)}
    added = [{"id": i, "content": t, "special": True} for t, i in sorted(encoding._special_tokens.items(),
                                                                         key=lambda kv: kv[1])]
    tokenizer = {"model": {"type": "BPE", "vocab": vocab, "merges": []}, "added_tokens": added}
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")


def test_transformers_whisper_matches(waves, tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    torch.manual_seed(1)
    config = transformers.WhisperConfig(
        vocab_size=51865, num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256, decoder_start_token_id=50258,
        eos_token_id=50257, pad_token_id=50257, bos_token_id=50257)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.model.decoder.embed_tokens.weight.normal_(0.0, 0.02)
        model.model.decoder.embed_positions.weight.normal_(0.0, 0.5)
    model.save_pretrained(tmp_path / "hf")
    write_hf_tokenizer(tmp_path / "hf")
    speech = asr.load_model(import_hf(tmp_path / "hf", tmp_path / "model"))
    feats, lengths = features(speech, waves[:1])
    mel, tokens = feats.transpose(1, 2), torch.tensor([prompt(speech.tokenizer)])
    with torch.no_grad():
        expected_enc = model.model.encoder(mel).last_hidden_state
        enc, enc_lengths = speech.model.encode(feats, lengths)
        assert (enc - expected_enc).abs().max() < 1e-4
        expected = model(input_features=mel, decoder_input_ids=tokens).logits
        assert (speech.model.decoder(tokens, enc, enc_lengths) - expected).abs().max() < 1e-4
        tok = speech.tokenizer
        generation = {"decoder_input_ids": tokens, "min_new_tokens": TOKENS, "max_new_tokens": TOKENS,
                      "do_sample": False, "suppress_tokens": sorted(tok.suppressed_ids),
                      "begin_suppress_tokens": sorted(tok.initial_suppressed_ids)}
        for beam in (1, 5):
            # The plain GenerationMixin.generate: Whisper's own fails with num_return_sequences > 1.
            out = transformers.GenerationMixin.generate(model, input_features=mel, num_beams=beam,
                                                        num_return_sequences=beam, **generation)
            expected_hyps = [row[-TOKENS:] for row in out.tolist()]
            result = speech.decode(feats, lengths, DecodeOptions(beam_size=beam, nbest=beam, min_len=TOKENS,
                                                                 max_len=TOKENS, target_lang="en"))[0]
            assert best_without_eos(result) == expected_hyps[0]
            assert sorted(expected_hyps) == sorted(list(h.tokens) for h in result.nbest)  # the same final beam


def test_model_dir_config_round_trips(reference):
    _, _, speech = reference
    config = dataclasses.asdict(speech.model.config)
    assert config["decoder"]["pos_enc"] == "learned" and config["decoder"]["max_positions"] == 448
    assert config["encoder"]["subsampling"] == "conv1d2" and not config["encoder"]["key_bias"]
    assert speech.feature_config.kind == "whisper" and speech.model.ctc is None
    assert speech.model.decoder.output.bias is None


def test_bfloat16_stays_close_to_the_float32_reference(reference, waves):
    """dtype="bfloat16" (the fast one on CPUs with AMX) rounds the weights: close to openai-whisper's
    float32 results, not equal (bench/whisper_compare.py times both)."""
    model, _, speech = reference
    fast = asr.load_model(speech.directory, dtype="bfloat16")
    feats, lengths = features(fast, waves)
    tokens = torch.tensor([prompt(fast.tokenizer) + [1000, 2000, 3000]] * 2)
    with torch.no_grad():
        expected_enc = model.encoder(feats.transpose(1, 2))
        expected = model.decoder(tokens, expected_enc).log_softmax(-1)
        enc, enc_lengths = fast.model.encode(feats, lengths)
        ours = fast.model.decoder(tokens, enc, enc_lengths).float().log_softmax(-1)
    # Measured: 0.008 of the largest activation; 0.005 in log-probability.
    assert enc.dtype == torch.bfloat16 and (enc.float() - expected_enc).abs().max() < 0.02 * expected_enc.abs().max()
    assert (ours - expected).abs().max() < 0.02
    beam = fast.decode(feats, lengths, DecodeOptions(beam_size=5, min_len=TOKENS, max_len=TOKENS, target_lang="en"))
    assert [len(r.tokens) for r in beam] == [TOKENS, TOKENS]
    assert not {t for r in beam for t in r.tokens} & fast.tokenizer.suppressed_ids
