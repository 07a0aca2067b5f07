"""The user's task: an ImageFolder on disk, or the built-in handwritten digits.

`builtin` is scikit-learn's bundled handwritten digits (1797 real 8x8 scans, 10 classes),
upsampled to the input size: a small task that runs offline and differs from the glyphs
the built-in backbones were pretrained on. A folder is an ImageFolder (one sub-folder per
class); with `train/` and `val/` inside it those are used, otherwise a seeded stratified
split keeps 20% of each class for validation. Unreadable images are skipped and counted.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from .errors import NetcutError

if TYPE_CHECKING:
    from torchvision.datasets import ImageFolder

log = logging.getLogger(__name__)

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
BUILTIN_NORMALIZATION = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
VAL_FRACTION = 0.2
# Held out before anything else: the images the reported test accuracy rests on, which neither training nor
# the choice between candidates (by validation accuracy) ever sees.
TEST_FRACTION = 0.2


@dataclass
class TaskData:
    classes: list[str]
    train: Dataset  # with augmentation (full fine-tuning)
    train_plain: Dataset  # without (feature caching for head fine-tuning)
    val: Dataset
    normalization: dict
    source: str
    skipped: int = 0
    counts: dict = field(default_factory=dict)
    test: Dataset | None = None  # held out from training and from selection


class _Augmented(Dataset):
    def __init__(self, base: Dataset, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.base, self.fn = base, fn

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.base[i]
        return self.fn(x), y


def _shift(x: torch.Tensor, pixels: int = 2) -> torch.Tensor:
    """Digits augmentation: a small random translation (no flips: a flipped 2 is no 2).

    Drawn from torch's generator, which training seeds per candidate (like torchvision's
    transforms): a candidate trains the same whichever candidates trained before it."""
    dy, dx = (int(v) for v in torch.randint(-pixels, pixels + 1, (2,)))
    return torch.roll(x, shifts=(dy, dx), dims=(1, 2))


def stratified_split(labels: list[int], seed: int, fraction: float = VAL_FRACTION) -> tuple[list[int], list[int]]:
    """Indices (kept, held out): `fraction` of each class held out, at least one image of a class of two or more."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    train, val = [], []
    for y, idx in sorted(by_class.items()):
        rng.shuffle(idx)
        cut = max(1, int(round(len(idx) * fraction))) if len(idx) > 1 else 0
        val += idx[:cut]
        train += idx[cut:]
    return sorted(train), sorted(val)


def digits(input_size: int, normalization: dict, seed: int = 0, test_fraction: float = 0.0) -> TaskData:
    """The built-in task. With test_fraction, that part of each class is set aside first as `test`, which
    neither training nor the choice between candidates sees (bench/search.py compares picks on it)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise NetcutError("the built-in task needs scikit-learn: pip install 'netcut[host]'") from None
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = torch.nn.functional.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(normalization["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(normalization["std"]).view(1, 3, 1, 1)
    x = (x.repeat(1, 3, 1, 1) - mean) / std
    y = torch.tensor(bunch.target, dtype=torch.long)
    full = TensorDataset(x, y)
    kept, test_idx = (
        stratified_split(y.tolist(), seed + 1, test_fraction) if test_fraction else (list(range(len(y))), [])
    )
    train_pos, val_pos = stratified_split([int(y[i]) for i in kept], seed)
    train_idx, val_idx = [kept[i] for i in train_pos], [kept[i] for i in val_pos]
    plain = Subset(full, train_idx)
    pixels = max(1, input_size // 16)
    counts = {"train": len(train_idx), "val": len(val_idx), **({"test": len(test_idx)} if test_idx else {})}
    return TaskData(
        [str(d) for d in range(10)],
        _Augmented(plain, lambda t: _shift(t, pixels)),
        plain,
        Subset(full, val_idx),
        normalization,
        "builtin: scikit-learn handwritten digits (8x8 scans)",
        counts=counts,
        test=Subset(full, test_idx) if test_idx else None,
    )


def _readable(paths: list[str]) -> tuple[set[str], int]:
    from PIL import Image

    bad = set()
    for p in paths:
        try:
            with Image.open(p) as im:
                im.verify()
        except Exception:  # PIL raises many types for broken files
            bad.add(p)
    return bad, len(bad)


def image_folder(
    root: Path, input_size: int, normalization: dict, seed: int = 0, test_fraction: float = 0.0
) -> TaskData:
    """An ImageFolder task. The test split is the `test/` folder where there is one, else `test_fraction` of
    each class of the training images, set aside first."""
    from torchvision import datasets, transforms

    root = Path(root)
    if not root.is_dir():
        raise NetcutError(
            f"{root} is not a folder; give an ImageFolder (one sub-folder per class) or 'builtin'", option="data"
        )
    normalize = transforms.Normalize(normalization["mean"], normalization["std"])
    plain_tf = transforms.Compose(
        [transforms.Resize(int(input_size * 1.14)), transforms.CenterCrop(input_size), transforms.ToTensor(), normalize]
    )
    aug_tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(input_size, scale=(0.6, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            normalize,
        ]
    )

    def folder(path: Path, transform: Callable) -> ImageFolder:
        try:
            ds = datasets.ImageFolder(str(path), transform=transform, loader=lambda p: _rgb(p))
        except (FileNotFoundError, RuntimeError) as exc:
            raise NetcutError(
                f"no images found in {path}: {exc}; expected one sub-folder of images per class"
            ) from None
        return ds

    def readable(path: Path) -> tuple[ImageFolder, int]:
        """The folder's images without the unreadable ones, and how many those were."""
        ds = folder(path, plain_tf)
        bad, count = _readable([p for p, _ in ds.samples])
        ds.samples = [s for s in ds.samples if s[0] not in bad]
        ds.targets = [y for _, y in ds.samples]
        return ds, count

    split = (root / "train").is_dir() and (root / "val").is_dir()
    base, skipped = readable(root / "train" if split else root)
    test_set = None
    if (root / "test").is_dir():
        test_set, skipped_test = readable(root / "test")
        skipped += skipped_test
        if test_set.classes != base.classes:
            raise NetcutError(f"the test folder's classes {test_set.classes[:5]} are not the training classes")
    elif test_fraction:
        kept, test_idx = stratified_split(base.targets, seed + 1, test_fraction)
        test_set = folder(root / "train" if split else root, plain_tf)
        test_set.samples = [base.samples[i] for i in test_idx]
        test_set.targets = [base.targets[i] for i in test_idx]
        base.samples = [base.samples[i] for i in kept]
        base.targets = [base.targets[i] for i in kept]
    if split:
        val, skipped_val = readable(root / "val")
        skipped += skipped_val
        if val.classes != base.classes:
            missing = sorted(set(base.classes) - set(val.classes))
            raise NetcutError(f"the val folder lacks classes {missing[:5]}; every class needs validation images")
        aug = folder(root / "train", aug_tf)
        aug.samples, aug.targets = base.samples, base.targets
        train_plain, train_aug, val_set = base, aug, val
        val_labels = val.targets
    else:
        train_idx, val_idx = stratified_split(base.targets, seed)
        aug = folder(root, aug_tf)
        aug.samples, aug.targets = base.samples, base.targets
        train_plain, train_aug, val_set = Subset(base, train_idx), Subset(aug, train_idx), Subset(base, val_idx)
        val_labels = [base.targets[i] for i in val_idx]
    if len(base.classes) < 2:
        raise NetcutError(f"{root} has {len(base.classes)} class; a classifier needs at least 2 classes (sub-folders)")
    if len(train_plain) == 0:
        raise NetcutError(f"{root} has no readable images ({skipped} unreadable)")
    absent = sorted(set(range(len(base.classes))) - set(val_labels))
    if absent:
        names = [base.classes[i] for i in absent]
        raise NetcutError(f"classes {names[:5]} have no validation images; give each class at least 2 images")
    if skipped:
        log.warning("skipped %d unreadable image%s", skipped, "s" if skipped > 1 else "")
    return TaskData(
        list(base.classes),
        train_aug,
        train_plain,
        val_set,
        normalization,
        str(root),
        skipped,
        {"train": len(train_plain), "val": len(val_set), **({"test": len(test_set)} if test_set else {})},
        test=test_set,
    )


def _rgb(path: str):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def load_task(data: str, input_size: int, normalization: dict, seed: int = 0, test_fraction: float = 0.0) -> TaskData:
    if data == "builtin":
        return digits(input_size, normalization, seed, test_fraction)
    return image_folder(Path(data), input_size, normalization, seed, test_fraction)
