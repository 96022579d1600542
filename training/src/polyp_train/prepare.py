"""The datasets of one run, ready to train on: named sources, checked pairs, per-dataset splits.

``--data kvasir=/data/Kvasir-SEG --data clinicdb=s3://datasets/cvc-clinicdb``: each source is a
folder, zip, list file or S3 prefix (see ``data``), split on its own (see ``splits``); the run
trains on the union and reports validation metrics per dataset. The driver and every Ray worker
call ``prepare`` with the same arguments and get the same frames on the same sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from polyp_core.job import parse_source

from . import data
from .errors import DatasetError
from .splits import DatasetSplit, fingerprint, sequence_map, split_dataset

DEFAULT_VAL_FRACTION = 0.2  # training's default, so evaluate and dataset push see the same held-out frames


@dataclass
class PreparedData:
    splits: list[DatasetSplit]
    fingerprint: str
    problems: list[str]  # bad pairs left out (with skip_bad); empty otherwise

    @property
    def train(self) -> list[data.Sample]:
        return [sample for part in self.splits for sample in part.train]

    @property
    def val(self) -> list[data.Sample]:
        return [sample for part in self.splits for sample in part.val]

    def summary(self) -> dict:
        return {part.name: part.summary() for part in self.splits}


def prepare(sources: list[str], cache_dir: Path, val_fraction: float, skip_bad: bool = False) -> PreparedData:
    parsed = [parse_source(text) for text in sources]
    if not parsed:
        raise DatasetError("no dataset given (--data NAME=PATH)")
    names = [source.name for source in parsed]
    if len(set(names)) != len(names):
        raise DatasetError(f"two datasets share a name in {names}: name them, --data NAME=PATH")
    splits, problems = [], []
    for source in parsed:
        found: list[str] | None = [] if skip_bad else None
        local = data.materialize(source.uri, Path(cache_dir))
        try:
            samples = data.check_pairs(data.discover(local, source.name, found), found)
        except DatasetError as exc:  # run messages and alerts name the dataset, not this node's cache folder
            raise DatasetError(f"dataset {source.name}: {str(exc).replace(str(local), source.uri)}") from None
        folder = samples[0].image.parent.parent if samples else local
        splits.append(split_dataset(source.name, samples, val_fraction, sequence_map(folder)))
        problems += [f"{source.name}: {problem}" for problem in found or []]
    return PreparedData(splits, fingerprint(splits), problems)
