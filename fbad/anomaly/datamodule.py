"""From a dataset config to per-plane Lightning DataModules over cached, preprocessed arrays."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from fbad.anomaly.preprocessor import Preprocessor
from fbad.data.imageio import SkipLog
from fbad.data.readers import read_dataset
from fbad.data.records import Label, Plane, Record
from fbad.data.splits import Splits, split_records
from fbad.engine.augment import build_augment
from fbad.engine.cache import CachedArrays, cached_preprocess
from fbad.errors import DatasetError

log = logging.getLogger(__name__)
SPLIT_NAMES = ("train", "val", "test")


@dataclass
class PreparedData:
    """Records, their split and their cached arrays: computed once, shared by every plane's model."""

    records: list[Record]
    splits: Splits
    cache: CachedArrays
    skipped: SkipLog  # reader and preprocessing skips together

    def rows(self, split: str, plane: Plane | None = None) -> tuple[np.ndarray, list[Record]]:
        """Cache rows and records of one split (and plane), leaving out images that failed preprocessing."""
        row_of = {id(r): int(self.cache.row_of[i]) for i, r in enumerate(self.records)}
        recs = [r for r in getattr(self.splits, split) if (plane is None or r.plane == plane) and row_of[id(r)] >= 0]
        return np.array([row_of[id(r)] for r in recs], dtype=np.int64), recs

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per plane and split after preprocessing skips (for the run summary)."""
        out: dict[str, dict[str, int]] = {}
        for split in SPLIT_NAMES:
            for r in self.rows(split)[1]:
                out.setdefault(str(r.plane), dict.fromkeys(SPLIT_NAMES, 0))[split] += 1
        return out


def prepare_data(dataset_cfg: Any, preprocess_cfg: Mapping, cache_dir: Path | str, val_fraction: float = 0.2,
                 seed: int = 0, workers: int | None = None, progress: bool = True) -> PreparedData:
    read = read_dataset(dataset_cfg)
    if not read.records:
        raise DatasetError(f"dataset {dataset_cfg.get('name')} at {dataset_cfg.get('root')}: no usable images")
    pre = Preprocessor(preprocess_cfg)
    cache = cached_preprocess(read.records, pre, pre.config_for_hash(), cache_dir, workers=workers,
                              progress=progress)
    skipped = SkipLog(rows=read.skipped.rows + cache.skipped.rows)
    splits = split_records(read.records, val_fraction=val_fraction, seed=seed)
    return PreparedData(records=read.records, splits=splits, cache=cache, skipped=skipped)


UNKNOWN_LABEL = -1
LABEL_CODES = {Label.NORMAL: 0, Label.ABNORMAL: 1}


class ArrayDataset(Dataset):
    """Rows of the cache as tensors: image (1,S,S) float32, mask (1,S,S), anomaly (1,S,S), label."""

    def __init__(self, arrays: Mapping[str, np.ndarray], rows: np.ndarray, records: Sequence[Record],
                 transform: Any = None):
        self.arrays, self.rows, self.records, self.transform = arrays, rows, list(records), transform
        # 1 abnormal, 0 normal, -1 unknown (FETAL_PLANES_DB has no anomaly labels): unknown images count as
        # presumed normal for the loss and the threshold, never in a metric
        self.labels = np.array([LABEL_CODES.get(r.label, UNKNOWN_LABEL) for r in self.records], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        image = np.asarray(self.arrays["image"][row], dtype=np.float32)
        mask = np.asarray(self.arrays["mask"][row], dtype=np.uint8)
        anomaly = np.asarray(self.arrays["anomaly"][row], dtype=np.uint8)
        if self.transform is not None:
            out = self.transform(image=image, mask=mask, anomaly=anomaly)
            image, mask, anomaly = out["image"], out["mask"], out["anomaly"]
        return {
            "image": torch.from_numpy(np.clip(image, 0.0, 1.0)[None].copy()),
            "mask": torch.from_numpy(mask[None].astype(np.float32)),
            "anomaly": torch.from_numpy(anomaly[None].astype(np.float32)),
            "label": int(self.labels[i]),
            "index": i,
        }


class EpochShuffleSampler(torch.utils.data.Sampler[int]):
    """A permutation that depends only on (seed, epoch): a resumed run sees the same batches.

    With `length` an epoch is that many indices (permutations one after another), however many images there
    are: a model that sees a fresh synthetic anomaly per sample (`nsa`) then trains and validates per a
    fixed number of steps, not per pass over a small dataset."""

    def __init__(self, n: int, seed: int, length: int | None = None):
        self.n, self.seed, self.epoch = n, seed, 0
        self.length = int(length) if length else n

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this before every epoch
        self.epoch = epoch

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        reps = -(-self.length // self.n)
        return iter(torch.cat([torch.randperm(self.n, generator=gen) for _ in range(reps)])[:self.length].tolist())

    def __len__(self) -> int:
        return self.length


class PlaneDataModule(pl.LightningDataModule):
    """One plane's (or all planes') train/val/test loaders; augmentation on train only."""

    def __init__(self, prepared: PreparedData, plane: Plane | None, batch_size: int = 32, num_workers: int = 0,
                 augment: Sequence[Mapping] | None = None, seed: int = 0, pin_memory: bool = False,
                 epoch_samples: int | None = None):
        super().__init__()
        self.prepared, self.plane, self.epoch_samples = prepared, plane, epoch_samples
        self.batch_size, self.num_workers, self.seed, self.pin_memory = batch_size, num_workers, seed, pin_memory
        self.augment = build_augment(augment, seed, extra_masks=("anomaly",))
        self.datasets: dict[str, ArrayDataset] = {}
        for split in SPLIT_NAMES:
            rows, recs = prepared.rows(split, plane)
            self.datasets[split] = ArrayDataset(prepared.cache.arrays, rows, recs,
                                                self.augment if split == "train" else None)
        if len(self.datasets["train"]) == 0:
            raise DatasetError(f"plane {plane or 'all'}: no normal training images after splitting")

    def set_epoch(self, epoch: int) -> None:
        """Reseed augmentation per epoch so a resumed run replays the same epochs (num_workers=0)."""
        if self.augment is not None:
            self.augment.set_random_seed(self.seed * 100_003 + epoch)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        sampler = EpochShuffleSampler(len(self.datasets[split]), self.seed, self.epoch_samples) if shuffle else None
        return DataLoader(self.datasets[split], batch_size=self.batch_size, sampler=sampler,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
