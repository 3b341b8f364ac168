"""Command-line entry points: asr-run (Hydra recipes), asr-transcribe, asr-wer."""
