"""Training/validation splits that do not leak, and the fingerprint that records them.

A frame goes to validation by a hash of its file name alone: the same frame lands on the same side
whatever the seed, the order of files or the other datasets in the run, so models trained apart are
judged on the same held-out frames. Video datasets (CVC-ClinicDB: 612 frames from 29 sequences, the
neighbours near-duplicates) are split by whole sequence instead, or validation Dice is inflated by
leakage. The sequence map comes from a ``sequences.csv`` (``stem,sequence`` lines) beside
``images/``, or from CVC-ClinicDB's own README table (frame ranges per sequence).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from .data import Sample, file_digest
from .errors import DatasetError

CVC_README = "README_original_CVC-ClinicDB.txt"
_CVC_RANGE = re.compile(r"(\d+)\s+to\s+(\d+)\s*\|\s*(\d+)")


def _rank(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sequence_map(folder: Path) -> dict[str, str] | None:
    """stem -> sequence id for a video dataset, None for a dataset of independent frames."""
    listed = folder / "sequences.csv"
    if listed.is_file():
        pairs = [line.split(",") for line in listed.read_text().splitlines() if line.strip() and not line.startswith("#")]
        return {stem.strip(): sequence.strip() for stem, sequence in pairs}
    readme = folder / CVC_README
    if readme.is_file():
        ranges = [tuple(map(int, match)) for match in _CVC_RANGE.findall(readme.read_text(errors="replace"))]
        if not ranges:
            raise DatasetError(f"{readme}: no 'first to last | sequence' rows")
        return {str(frame): str(sequence) for first, last, sequence in ranges for frame in range(first, last + 1)}
    return None


@dataclass
class DatasetSplit:
    name: str
    policy: str  # "file-name hash" or "video sequence"
    train: list[Sample]
    val: list[Sample]
    val_sequences: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "split": self.policy,
            "train": len(self.train),
            "val": len(self.val),
            **({"val_sequences": self.val_sequences} if self.val_sequences else {}),
        }


def split_dataset(name: str, samples: list[Sample], val_fraction: float, sequences: dict[str, str] | None) -> DatasetSplit:
    """Hash order of file names (or of sequence ids), the first ones to validation until it holds
    val_fraction of the frames; at least one frame (sequence) on each side."""
    if len(samples) < 2:
        raise DatasetError(f"dataset {name or 'data'}: need at least 2 image/mask pairs to split, got {len(samples)}")
    if sequences is None:
        order = sorted(samples, key=lambda s: _rank(s.stem))
        n_val = min(len(order) - 1, max(1, round(len(order) * val_fraction)))
        return DatasetSplit(name, "file-name hash", order[n_val:], order[:n_val])
    unknown = [s.stem for s in samples if s.stem not in sequences]
    if unknown:
        raise DatasetError(f"dataset {name}: {len(unknown)} frame(s) have no sequence in its map: {', '.join(unknown[:10])}")
    by_sequence: dict[str, list[Sample]] = {}
    for sample in samples:
        by_sequence.setdefault(sequences[sample.stem], []).append(sample)
    if len(by_sequence) < 2:
        raise DatasetError(f"dataset {name}: all frames are from one sequence; a split by sequence needs two")
    sequence_order = sorted(by_sequence, key=lambda seq: _rank(f"sequence {seq}"))
    val_ids: list[str] = []
    while len(val_ids) < len(sequence_order) - 1 and sum(len(by_sequence[i]) for i in val_ids) < val_fraction * len(samples):
        val_ids.append(sequence_order[len(val_ids)])
    train = [s for seq in sequence_order[len(val_ids) :] for s in by_sequence[seq]]
    val = [s for seq in val_ids for s in by_sequence[seq]]
    return DatasetSplit(
        name,
        "video sequence",
        sorted(train, key=lambda s: s.stem),
        sorted(val, key=lambda s: s.stem),
        sorted(val_ids, key=lambda seq: (len(seq), seq)),
    )


def fingerprint(splits: list[DatasetSplit]) -> str:
    """sha256 over every (dataset, stem, image bytes, mask bytes, side) and each split policy: the
    same frames split differently are a different dataset."""
    digest = hashlib.sha256()
    for part in sorted(splits, key=lambda p: p.name):
        digest.update(f"{part.name}\0{part.policy}\0".encode())
        for side, samples in (("train", part.train), ("val", part.val)):
            for sample in sorted(samples, key=lambda s: s.stem):
                digest.update(f"{side}\0{sample.stem}\0".encode())
                digest.update(file_digest(sample.image) + file_digest(sample.mask))
    return digest.hexdigest()
