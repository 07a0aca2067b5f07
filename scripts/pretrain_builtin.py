"""Pretrain the built-in backbones on the procedural glyph task (reproducible, CPU is enough).

    python scripts/pretrain_builtin.py [--steps 1200] [--models mobilenet_v3_small,mnasnet0_5,squeezenet1_1]
                                       [--out DIR]

Writes netcut/builtin/<model>.pt (float16 state_dict, with the source task's classifier)
and netcut/builtin/manifest.json (how each was made, and its accuracy on held-out glyphs).
With --out DIR it writes there instead: backbones kept out of the package (bench/search.py
uses some), found by NetCut when DIR is in NETCUT_BUILTIN_PATH.
These weights are what `netcut-host search --data builtin` transfers from: real transfer
learning offline, without downloading ImageNet weights. Seeds fix everything but the
thread scheduling of the CPU kernels.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from netcut.glyphs import glyph_bank, render  # noqa: E402

OUT = ROOT / "netcut" / "builtin"
CLASSES, SIZE, BATCH, SEED = 128, 32, 128, 0
MEAN, STD = 0.5, 0.5


IMAGES = 38_400  # rendered once (uint8), shared by every network
# SqueezeNet has no batch norm: at the others' rate its ReLUs die and it never learns.
LEARNING_RATE = {"squeezenet1_1": 5e-4}


def dataset(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    bank = glyph_bank(CLASSES, SEED)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, count)
    images = np.concatenate(
        [(render(bank, labels[i : i + 512], SIZE, rng) * 255).astype(np.uint8) for i in range(0, count, 512)]
    )
    return torch.from_numpy(images), torch.from_numpy(labels)


def batches(data, steps, seed):
    images, labels = data
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(labels), (BATCH,), generator=generator)
        x = images[idx].float() / 255.0
        flip = torch.rand(BATCH, generator=generator) < 0.5  # strokes mirrored are new strokes of the same kind
        x[flip] = x[flip].flip(-1)
        yield (x - MEAN) / STD, labels[idx]


def train(name: str, steps: int, train_data, held_out, out: Path = OUT) -> dict:
    torch.manual_seed(SEED)
    model = torchvision.models.get_model(name, weights=None, num_classes=CLASSES)
    lr = LEARNING_RATE.get(name, 3e-3)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.15)
    started = time.time()
    model.train()
    for step, (x, y) in enumerate(batches(train_data, steps, SEED + 1)):
        loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 100 == 0:
            print(f"{name} step {step}/{steps} loss {loss.item():.3f} ({time.time() - started:.0f} s)", flush=True)
    model.eval()
    correct = total = 0
    with torch.no_grad():
        images, labels = held_out  # rendered with another seed: images never seen in training
        for i in range(0, len(labels), 512):
            x = (images[i : i + 512].float() / 255.0 - MEAN) / STD
            correct += (model(x).argmax(1) == labels[i : i + 512]).sum().item()
            total += len(labels[i : i + 512])
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(state, out / f"{name}.pt")
    return {
        "model": name,
        "source_task": f"procedural glyphs, {CLASSES} classes, {SIZE}x{SIZE}",
        "num_classes": CLASSES,
        "input_size": SIZE,
        "normalization": {"mean": [MEAN] * 3, "std": [STD] * 3},
        "steps": steps,
        "batch": BATCH,
        "images": IMAGES,
        "learning_rate": lr,
        "seed": SEED,
        "held_out_accuracy": round(correct / total, 4),
        "train_seconds": round(time.time() - started, 1),
        "torch": torch.__version__,
        "file_bytes": (out / f"{name}.pt").stat().st_size,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--models", default="mobilenet_v3_small,shufflenet_v2_x0_5,resnet18")
    parser.add_argument(
        "--out",
        type=Path,
        default=OUT,
        help="folder for the weights and manifest.json (default: the package's netcut/builtin)",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    started = time.time()
    train_data, held_out = dataset(IMAGES, SEED + 10), dataset(2048, SEED + 20)
    print(f"rendered {IMAGES} + 2048 glyph images in {time.time() - started:.0f} s", flush=True)
    for name in args.models.split(","):
        manifest[name] = train(name, args.steps, train_data, held_out, args.out)
        manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
        print(json.dumps(manifest[name]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
