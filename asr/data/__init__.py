"""Data: manifests, Kaldi import, dynamic batching, the speech dataset and the text dataset (for LMs).

    utterances = read_manifest("data/train.jsonl")
    dataset = SpeechDataset(utterances, FeatureExtractor(config), tokenizer, speed_factors=(0.9, 1.0, 1.1))
    sampler = DynamicBatchSampler([u.duration for u in utterances], max_seconds=300)
    loader = make_dataloader(dataset, sampler, num_workers=2)
    for epoch in range(epochs):
        sampler.set_epoch(epoch); dataset.set_epoch(epoch)
        for batch in loader: ...
"""

from asr.data.dataset import IGNORE_ID, Batch, SpeechDataset, collate, make_dataloader
from asr.data.kaldi import import_kaldi_dir
from asr.data.manifest import ManifestError, Utterance, read_manifest, write_manifest
from asr.data.sampler import DynamicBatchSampler
from asr.data.text_dataset import TextDataset

__all__ = [
    "IGNORE_ID",
    "Batch",
    "DynamicBatchSampler",
    "ManifestError",
    "SpeechDataset",
    "TextDataset",
    "Utterance",
    "collate",
    "import_kaldi_dir",
    "make_dataloader",
    "read_manifest",
    "write_manifest",
]
