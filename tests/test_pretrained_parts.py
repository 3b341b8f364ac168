"""The pieces that run imported Whisper / Speech2Text models, without openai-whisper or transformers:
the new model options (Conv1d front-ends, positions, biases), Whisper features and utterance CMVN,
the Whisper and Speech2Text tokenizers on small vocabularies, the search with a tokenizer's own
sos/eos and prompt (language detection, suppressed tokens), and the safe checkpoint readers.
(tests/test_import_whisper.py and tests/test_import_s2t.py check parity against the reference code.)
"""

from __future__ import annotations

import base64
import io
import json
import struct

import librosa
import pytest
import sentencepiece as spm
import torch

import asr
from asr.decode import DecodeOptions
from asr.decode.language import detect_language, resolve_prefix
from asr.features import FeatureConfig, FeatureExtractor, slaney_mel_filters
from asr.model import DecoderConfig, EncoderConfig, ModelConfig, build_model
from asr.model.io import save_model_dir
from asr.model.positional import FairseqPositionalEncoding, LearnedPositionalEncoding, WhisperPositionalEncoding
from asr.model.subsampling import SUBSAMPLING
from asr.pretrained.checkpoints import load_into, read_safetensors, read_weights, rename
from asr.text import load_tokenizer
from asr.text.speech2text import Speech2TextTokenizer
from asr.text.whisper import WhisperTokenizer, read_tiktoken, tokens_from_vocab_json


def test_conv1d_front_ends_give_each_utterance_its_own_frames():
    torch.manual_seed(0)
    feats = torch.randn(3, 37, 20)
    lengths = torch.tensor([37, 30, 9])
    for name, rate in (("conv1d2", 2), ("conv1d4_glu", 4)):
        module = SUBSAMPLING[name](20, 16, 24).eval()
        assert module.rate == rate and module.min_input_length == 1
        out, out_lengths = module(feats, lengths)
        assert out_lengths.tolist() == [(n - 1) // rate + 1 for n in lengths.tolist()] == \
            module.output_lengths(lengths).tolist()
        for i, n in enumerate(lengths.tolist()):
            alone, _ = module(feats[i : i + 1, :n], lengths[i : i + 1])
            assert torch.allclose(out[i, : out_lengths[i]], alone[0], atol=1e-6)
    with pytest.raises(ValueError, match="must be even"):
        SUBSAMPLING["conv1d4_glu"](20, 16, 25)


def test_positional_tables():
    whisper = WhisperPositionalEncoding(8, scale=False)
    fairseq = FairseqPositionalEncoding(8, scale=True)
    x = torch.zeros(1, 5, 8)
    assert torch.equal(whisper(x)[0, 0], torch.tensor([0.0] * 4 + [1.0] * 4))  # sin 0, cos 0
    assert torch.equal(fairseq(x)[0], whisper(torch.zeros(1, 7, 8))[0, 2:])  # fairseq counts from row 2
    assert torch.allclose(fairseq(torch.ones(1, 2, 8)) - fairseq(x[:, :2]), torch.full((1, 2, 8), 8.0**0.5))
    assert whisper(torch.zeros(1, 6000, 8)).shape == (1, 6000, 8)  # formula tables grow
    learned = LearnedPositionalEncoding(8, max_len=4, scale=False)
    assert learned.max_positions == 4 and torch.equal(learned(x[:, :2], offset=2)[0], learned.table[2:4].detach())
    with pytest.raises(ValueError, match="positions up to 5 requested, the model has 4"):
        learned(x[:, :1], offset=4)
    with pytest.raises(ValueError, match="max_positions: expected > 0 with pos_enc='learned'"):
        DecoderConfig(pos_enc="learned")


def whisper_like_config(vocab_size: int, max_positions: int = 32) -> ModelConfig:
    common = {"d_model": 32, "n_heads": 2, "n_layers": 1, "ffn_dim": 64, "dropout": 0.0, "activation": "gelu",
              "scale_embedding": False, "key_bias": False}
    return ModelConfig(vocab_size=vocab_size, input_dim=80, ctc_weight=0.0, specaug=None,
                       encoder=EncoderConfig(subsampling="conv1d2", pos_enc="whisper", **common),
                       decoder=DecoderConfig(pos_enc="learned", max_positions=max_positions, output_bias=False,
                                             **common))


def toy_whisper_tokenizer() -> WhisperTokenizer:
    """Every byte, then merges of "th", "the", " the", then Whisper's specials with 2 languages."""
    ranks = [bytes([b]) for b in range(256)] + [b"th", b"the", b" the"]
    return WhisperTokenizer.for_vocab_size(ranks, len(ranks) + 1509 + 2, "toy.tiktoken")


def test_model_options_and_incremental_decoding_agree():
    torch.manual_seed(0)
    model = build_model(whisper_like_config(100)).eval()
    names = model.state_dict().keys()
    assert "decoder.layers.0.self_attn.key.bias" not in names and "decoder.output.bias" not in names
    assert "decoder.pos_enc.table" in names and "encoder.pos_enc.table" not in names
    assert model.decoder.max_positions == 32
    enc = torch.randn(2, 10, 32)
    enc_lengths = torch.tensor([10, 7])
    tokens = torch.randint(0, 100, (2, 6))
    full = model.decoder(tokens, enc, enc_lengths)
    state = model.decoder.init_state(enc, enc_lengths)
    for t in range(6):
        logits, state = model.decoder.step(tokens[:, t], state)
        assert torch.allclose(logits, full[:, t], atol=1e-5)


def test_whisper_tokenizer_on_a_small_vocabulary(tmp_path):
    tok = toy_whisper_tokenizer()
    assert (tok.vocab_size, tok.eos_id, tok.sos_id, tok.multilingual) == (1770, 259, 260, False)
    assert tok.specials["<|en|>"] == 261 and tok.specials["<|notimestamps|>"] == 268
    assert tok.encode_ordinary("the theme") == [257, 258, ord("m"), ord("e")]
    assert tok.decode([257, 258, ord("m"), tok.eos_id, tok.timestamp_begin]) == "the them"
    assert tok.id_to_token(258) == "Ġthe" and tok.token_to_id("Ġthe") == 258 and tok.token_to_id("<|0.02|>") == 270
    assert tok.initial_suppressed_ids == {ord(" "), tok.eos_id}
    assert tok.specials["<|startoftranscript|>"] in tok.suppressed_ids and tok.eos_id not in tok.suppressed_ids
    assert tok.prefix_ids(None, None) == [268]  # English-only: <|notimestamps|> alone
    with pytest.raises(ValueError, match="only transcribes English"):
        tok.prefix_ids("st", None)
    multilingual = WhisperTokenizer(tok.ranks, 2, True, "toy.tiktoken")
    assert multilingual.language_ids == (261, 262)
    assert multilingual.prefix_ids("asr", "zh") == [262, 264, 268] and multilingual.prefix_ids("st", None)[0] is None
    tok.save(tmp_path)
    assert read_tiktoken(tmp_path / "toy.tiktoken") == tok.ranks
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, WhisperTokenizer) and loaded.vocab_size == tok.vocab_size
    assert loaded.encode("  the  them ") == tok.encode_ordinary("the them")  # whitespace collapsed, case kept
    (tmp_path / "bad.tiktoken").write_text("dGg= 0\naGU= 5\n", encoding="ascii")
    with pytest.raises(ValueError, match=r"bad.tiktoken:2: rank 5 out of order"):
        read_tiktoken(tmp_path / "bad.tiktoken")
    with pytest.raises(ValueError, match="do not fit a Whisper model with 300 outputs"):
        WhisperTokenizer.for_vocab_size(tok.ranks, 300, "toy.tiktoken")
    vocab = {"".join(tok.id_to_token(i)): i for i in range(259)}
    assert tokens_from_vocab_json(vocab, 259, "vocab.json") == tok.ranks


def test_search_uses_the_tokenizers_prompt_and_detects_the_language(tmp_path):
    ranks = toy_whisper_tokenizer().ranks
    tok = WhisperTokenizer(ranks, 2, True, "toy.tiktoken")
    torch.manual_seed(0)
    model = build_model(whisper_like_config(tok.vocab_size, max_positions=12)).eval()
    speech = asr.load_model(save_model_dir(tmp_path, model, tok, FeatureConfig(kind="whisper", n_fft=400)))
    feats, lengths = speech.features(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 8000]))
    assert feats.shape == (2, 3000, 80) and lengths.tolist() == [3000, 3000]
    feats, lengths = feats[:, :40], torch.tensor([40, 40])  # a short input keeps the test fast
    with torch.no_grad():
        enc, enc_lengths = speech.model.encode(feats, lengths)
    detected = detect_language(speech.model, enc, enc_lengths, tok)
    assert set(detected.tolist()) <= {261, 262}
    prefix = resolve_prefix(speech.model, enc, enc_lengths, [None, 264, 268], tok)
    assert prefix[:, 0].tolist() == detected.tolist() and prefix[:, 1:].tolist() == [[264, 268]] * 2
    # The learned decoder positions hold 12 tokens: <|startoftranscript|>, 3 prompt tokens and 8 more
    # (the 8th is read to score <eos>), so at most 8 tokens whatever max_len says.
    for beam in (1, 3):
        results = speech.decode(feats, lengths, DecodeOptions(beam_size=beam, min_len=5, max_len=448))
        for result in results:
            assert 5 <= len(result.tokens) <= 8 and not set(result.tokens) & tok.suppressed_ids
            assert result.tokens[0] not in tok.initial_suppressed_ids


def test_speech2text_tokenizer_and_search_with_sos_equal_to_eos(tmp_path, shared_dir):
    texts = [p.read_text(encoding="utf-8").lower() for p in sorted((shared_dir / "data" / "real").glob("*/*.txt"))]
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=proto, model_type="unigram",
                                   vocab_size=80, hard_vocab_limit=False, unk_id=3, bos_id=0, eos_id=2, pad_id=1,
                                   user_defined_symbols=["<lang:de>"], minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    tok = Speech2TextTokenizer([sp.id_to_piece(i) for i in range(sp.get_piece_size())], proto.getvalue(),
                               upper_case=True)
    assert (tok.sos_id, tok.eos_id, tok.bos_id, tok.pad_id) == (2, 2, 0, 1)
    ids = tok.encode("the house")
    assert tok.decode([2, *ids, 2]) == "THE HOUSE" and tok.prefix_ids("st", "de") == [4]
    config = ModelConfig(vocab_size=tok.vocab_size, input_dim=80, ctc_weight=0.0, specaug=None,
                         encoder=EncoderConfig(d_model=32, n_heads=2, n_layers=1, ffn_dim=64, subsampling="conv1d4_glu",
                                               subsampling_channels=48, pos_enc="fairseq"),
                         decoder=DecoderConfig(d_model=32, n_heads=2, n_layers=1, ffn_dim=64, pos_enc="fairseq",
                                               output_bias=False))
    torch.manual_seed(0)
    features = FeatureConfig(kind="fbank", f_min=20.0, utterance_cmvn=True)
    speech = asr.load_model(save_model_dir(tmp_path, build_model(config), tok, features))
    assert isinstance(speech.tokenizer, Speech2TextTokenizer) and speech.tokenizer.upper_case
    feats, lengths = speech.features(torch.randn(2, 8000) * 0.1, torch.tensor([8000, 6000]))
    valid = feats[1, : lengths[1]]
    assert valid.mean(0).abs().max() < 1e-4 and (valid.std(0, correction=0) - 1).abs().max() < 1e-3
    results = speech.decode(feats, lengths, DecodeOptions(beam_size=2, min_len=3, max_len=6, target_lang="de"))
    for result in results:
        assert 3 <= len(result.tokens) <= 6 and not set(result.tokens) & {0, 1}


def test_whisper_mel_filters_are_librosas():
    for n_mels in (80, 128):
        expected = torch.from_numpy(librosa.filters.mel(sr=16000, n_fft=400, n_mels=n_mels))
        assert (slaney_mel_filters(16000, 400, n_mels) - expected).abs().max() < 1e-8
    extractor = FeatureExtractor(FeatureConfig(kind="whisper", n_fft=400))
    assert extractor.num_frames(100) == 3000 and extractor.config.max_seconds == 30.0
    feats = extractor.extract(torch.zeros(16000))  # silence: everything at the floor
    assert feats.shape == (3000, 80) and torch.allclose(feats, torch.full_like(feats, (-10 + 4) / 4))


def write_safetensors(path, tensors: dict[str, torch.Tensor]) -> None:
    """The safetensors format by hand: an 8-byte header length, a JSON header, the raw data."""
    header, data = {}, b""
    names = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}
    for name, tensor in tensors.items():
        raw = tensor.contiguous().numpy().tobytes()
        header[name] = {"dtype": names[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    blob = json.dumps({"__metadata__": {"format": "pt"}, **header}).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


def test_checkpoint_readers_and_renaming(tmp_path):
    tensors = {"a.weight": torch.randn(3, 4), "b": torch.arange(5), "c": torch.randn(2).half()}
    write_safetensors(tmp_path / "model.safetensors", tensors)
    loaded = read_safetensors(tmp_path / "model.safetensors")
    assert all(torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in tensors.items())
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a.weight": "model.safetensors"}}))
    assert set(read_weights(index)) == set(tensors)
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", 5) + b"{oops")
    with pytest.raises(ValueError, match="bad.safetensors: not a safetensors file"):
        read_safetensors(tmp_path / "bad.safetensors")
    renamed = rename(tensors, [(r"a\.(weight)", r"x.\1"), (r"b", None), (r"c", "y")], "ckpt")
    assert set(renamed) == {"x.weight", "y"}
    with pytest.raises(ValueError, match=r"ckpt: unexpected parameters \['c'\]"):
        rename(tensors, [(r"a\.weight", "x"), (r"b", None)], "ckpt")
    module = torch.nn.Linear(4, 3)
    with pytest.raises(ValueError, match=r"ckpt: .*missing \['bias'\]; wrong shape \['weight \(4, 3\)"):
        load_into(module, {"weight": torch.zeros(4, 3)}, "ckpt")
    load_into(module, {"weight": torch.ones(3, 4).half(), "bias": torch.zeros(3)}, "ckpt")
    assert module.weight.dtype == torch.float32 and bool((module.weight == 1).all())
    assert base64.b64decode("=") == b""  # how tiktoken files spell the empty token
