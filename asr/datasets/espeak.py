"""A small ctypes binding of eSpeak NG, the speech synthesiser behind the built-in `synth` corpus.

The shared library and its voice data come from the `espeakng-loader` wheel on PyPI, so the corpus
needs no system package:

    engine = get_engine()
    wave = engine.synthesize("set a timer for ten minutes", "en-us+f3", rate=170, pitch=60)
    # (S,) float32 in [-1, 1) at engine.sample_rate (22050 Hz)

The same request always gives the same samples, which takes two measures. eSpeak NG keeps its
state in C globals, and some of it carries from one utterance into the next with no API to reset
it (the phase of the pitch flutter and the wave generator's gain control are function-local
statics), so an utterance would sound slightly different, and differ in length, depending on what
was spoken before it. Each synthesis therefore loads the library afresh, initialises it, speaks
and unloads it again, which costs about 3 ms, about what a short sentence takes to synthesise.
And the random generators behind the breath noise of some voices are reseeded with a constant
(initialisation seeds eSpeak NG's own from the clock; another is the C library's rand()).

The library is one per process, so a module lock serialises all synthesis; processes (each loads
its own copy) are how the corpus is generated in parallel. If another module of the process holds
the library too, a private copy of the file is loaded instead, so that state is not shared.
"""

from __future__ import annotations

import _ctypes
import atexit
import ctypes
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# Constants from espeak-ng's speak_lib.h.
AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_Synth returns when the audio is complete, via the callback
ESPEAK_INITIALIZE_DONT_EXIT = 0x8000  # without it the library calls exit() when its data is missing
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
EE_OK = 0
PARAM_RATE = 1  # words per minute, 80..450
PARAM_PITCH = 3  # base pitch, 0..100
PARAM_RANGE = 4  # pitch range (intonation), 0..100

# Any constant will do: it makes the breath noise of a voice the same in every run.
RAND_SEED = 1

# Milliseconds of audio per callback; it only sets the chunk size, not the result.
BUFFER_MS = 500

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

# The C library of this process (dlopen(NULL)): its rand() feeds the noise of some voices.
_LIBC = ctypes.CDLL(None)
_LIBC.srand.argtypes = [ctypes.c_uint]
_LIBC.srand.restype = None

# All use of the library in this process: its state is global, whichever Espeak object loads it.
_LIBRARY_LOCK = threading.Lock()


class EspeakError(RuntimeError):
    """eSpeak NG cannot be loaded, or cannot speak a text with the voice asked for."""


def _declare_signatures(lib: ctypes.CDLL) -> None:
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Terminate.argtypes = []
    lib.espeak_Terminate.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = ctypes.c_int


def _is_resident(library_path: str) -> bool:
    """Whether the shared library at `library_path` is loaded in this process."""
    try:
        lib = ctypes.CDLL(library_path, mode=os.RTLD_NOLOAD)
    except OSError:  # RTLD_NOLOAD fails exactly when the library is not loaded
        return False
    _ctypes.dlclose(lib._handle)  # drop the reference RTLD_NOLOAD took
    return True


def _private_copy(library_path: str) -> str:
    """A copy of the library file in a temporary folder that is removed when the process exits."""
    folder = tempfile.mkdtemp(prefix="asr-espeak-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    copy = os.path.join(folder, os.path.basename(library_path))
    shutil.copyfile(library_path, copy)
    return copy


class Espeak:
    """eSpeak NG in synchronous mode: text in, float32 samples out, the same for the same request.

    library_path: libespeak-ng.so; data_path: its espeak-ng-data folder. `get_engine()` builds
    one from the `espeakng-loader` package.
    """

    def __init__(self, library_path: str | os.PathLike, data_path: str | os.PathLike) -> None:
        self.library_path = str(library_path)
        self._load_path = self.library_path  # or a private copy of it, see _loaded
        self.data_path = Path(data_path)
        if not (self.data_path / "phontab").is_file():
            raise EspeakError(f"{self.data_path} is not an espeak-ng-data folder (it has no 'phontab')")
        # Listed once: a voice is checked against them before every synthesis.
        self._variants = sorted(p.name for p in (self.data_path / "voices" / "!v").iterdir() if p.is_file())
        self._languages = sorted(p.name.lower() for p in (self.data_path / "lang").rglob("*") if p.is_file())
        with _LIBRARY_LOCK, self._loaded() as (_, rate):
            self.sample_rate: int = rate

    @contextmanager
    def _loaded(self) -> Iterator[tuple[ctypes.CDLL, int]]:
        """The library freshly loaded and initialised, and its sample rate; unloaded on exit.

        Call with _LIBRARY_LOCK held.
        """
        if _is_resident(self._load_path):
            # Another module of this process holds the library (a phonemizer, say): loading it
            # would share that copy's state. A private copy of the file is a library of its own.
            if self._load_path != self.library_path:
                raise EspeakError(
                    f"{self._load_path} stays loaded after it is closed, so eSpeak NG cannot start each "
                    "utterance from a clean state"
                )
            self._load_path = _private_copy(self.library_path)
        try:
            lib = ctypes.CDLL(self._load_path)
        except OSError as exc:
            raise EspeakError(f"cannot load the eSpeak NG library {self._load_path}: {exc}") from exc
        try:
            try:
                _declare_signatures(lib)
            except AttributeError as exc:  # espeak_ng_SetRandSeed is new in 1.52
                raise EspeakError(f"{self.library_path} is too old, eSpeak NG 1.52 or newer is needed: {exc}") from exc
            rate = lib.espeak_Initialize(
                AUDIO_OUTPUT_SYNCHRONOUS, BUFFER_MS, str(self.data_path).encode(), ESPEAK_INITIALIZE_DONT_EXIT
            )
            if rate <= 0:
                raise EspeakError(f"espeak_Initialize failed with data folder {self.data_path} (returned {rate})")
            # Initialisation seeds the generator of the breath noise (voices with "breath", such as
            # f2 and f3) from the clock: fix it, or such a voice sounds different every second. The
            # "klatt 6" voices (Reed, caleb, ...) draw their noise from the C library's rand().
            lib.espeak_ng_SetRandSeed(RAND_SEED)
            _LIBC.srand(RAND_SEED)
            try:
                yield lib, rate
            finally:
                lib.espeak_Terminate()  # frees the voice, dictionary and phoneme data
        finally:
            _ctypes.dlclose(lib._handle)

    def variants(self) -> list[str]:
        """Names of the voice variants in the data folder ("m1", "f3", "klatt", ...)."""
        return list(self._variants)

    def languages(self) -> list[str]:
        """Voice names of the languages in the data folder, lower-cased ("en-us", "en-gb-x-rp", "de", ...)."""
        return list(self._languages)

    def check_voice(self, voice: str) -> None:
        """Raise EspeakError unless `voice` ("language" or "language+variant") is in the data folder."""
        language, _, variant = voice.partition("+")
        # espeak_SetVoiceByName quietly ignores an unknown variant, and falls back to a similar
        # language for some unknown names: check both here so that a typo is an error, not a
        # corpus spoken by the wrong voice.
        if language.lower() not in self._languages:
            raise EspeakError(f"unknown eSpeak voice {language!r} in {voice!r} (see {self.data_path / 'lang'})")
        if variant and variant not in self._variants:
            raise EspeakError(
                f"unknown eSpeak voice variant {variant!r} in {voice!r}; variants: {', '.join(self._variants)}"
            )

    def synthesize(
        self, text: str, voice: str = "en-us", *, rate: int = 175, pitch: int = 50, pitch_range: int = 50
    ) -> np.ndarray:
        """Speak `text` with `voice` ("language" or "language+variant", e.g. "en-us+f3").

        rate: words per minute (80..450); pitch: base pitch 0..100; pitch_range: intonation 0..100.
        Returns: (S,) float32 in [-1, 1) at `self.sample_rate`; the same for the same arguments.
        """
        if not text.strip():
            raise EspeakError("cannot synthesise an empty text")
        limits = (("rate", rate, 80, 450), ("pitch", pitch, 0, 100), ("pitch_range", pitch_range, 0, 100))
        for name, value, low, high in limits:
            if not low <= value <= high:
                raise EspeakError(f"{name} must be in {low}..{high}, got {value}")
        self.check_voice(voice)
        data = text.encode("utf-8")
        chunks: list[bytes] = []

        def collect(samples: ctypes._Pointer, count: int, events: int | None) -> int:
            """Copy out each chunk of 16-bit samples; returning 0 means "go on"."""
            if count > 0 and samples:
                chunks.append(ctypes.string_at(samples, count * 2))
            return 0

        # ctypes frees a callback object that Python no longer references, and the library would
        # then call freed memory: `callback` lives until the library is unloaded.
        callback = _SynthCallback(collect)
        with _LIBRARY_LOCK, self._loaded() as (lib, _):
            lib.espeak_SetSynthCallback(callback)
            status = lib.espeak_SetVoiceByName(voice.encode())
            if status != EE_OK:
                raise EspeakError(f"eSpeak NG cannot select voice {voice!r} (espeak_SetVoiceByName returned {status})")
            # The voice resets the parameters, so they are set after it.
            for param, value in ((PARAM_RATE, rate), (PARAM_PITCH, pitch), (PARAM_RANGE, pitch_range)):
                lib.espeak_SetParameter(param, int(value), 0)
            status = lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
        if status != EE_OK:
            raise EspeakError(f"espeak_Synth failed on {text!r} with voice {voice!r} (returned {status})")
        samples = np.frombuffer(b"".join(chunks), dtype=np.int16)
        if samples.size == 0:
            raise EspeakError(f"eSpeak NG produced no audio for {text!r} with voice {voice!r}")
        return samples.astype(np.float32) / 32768.0


_ENGINE: Espeak | None = None
_ENGINE_LOCK = threading.Lock()


def get_engine() -> Espeak:
    """The process's eSpeak NG engine, from the `espeakng-loader` package, built on first use."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            try:
                import espeakng_loader
            except ImportError as exc:
                raise EspeakError(
                    "the synth corpus needs eSpeak NG from the 'espeakng-loader' package: pip install espeakng-loader"
                ) from exc
            _ENGINE = Espeak(espeakng_loader.get_library_path(), espeakng_loader.get_data_path())
        return _ENGINE
