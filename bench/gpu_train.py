"""Retraining on a GPU: the built-in search with --device cuda (full and head fine-tuning), its training
throughput against the PyTorch AMP ceiling for the same network and input, and the out-of-memory retry
triggered for real. Prints JSON. Needs one NVIDIA GPU, torch, torchvision and the project; under 5 minutes.

    python bench/gpu_train.py                  # on the GPU (exit 2, saying so, where torch sees none)
    python bench/gpu_train.py --device cpu     # a smoke run of the script's plumbing; no figure means anything

- search: `netcut-host search --device cuda --finetune full|head --precision fp32` on the built-in task, its
  wall time and its training phase;
- full: images/s of netcut.training.train_full (what the search runs) against the ceiling: a plain bf16
  autocast loop, channels-last, the whole training set on the GPU already, same network, input and batch
  (goal: 70% or more);
- head: train_heads at every cut of the network against one inference pass over the same images
  (goal: within 1.5x);
- oom: the allocator capped (torch.cuda.set_per_process_memory_fraction) below one training step's peak at the
  batch asked for, so train_full's first attempt runs out of memory for real and its retry at half the batch
  finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from netcut import models
from netcut.cuts import analyse, candidate_cuts
from netcut.data import BUILTIN_NORMALIZATION, load_task
from netcut.training import TrainConfig, train_full, train_heads
from netcut.trn import build_trn

NETWORK = "resnet18"
BIN = Path(sys.executable).parent


def search(device: str, finetune: str, epochs: int, out: Path) -> dict:
    argv = [str(BIN / "netcut-host"), "search", "--device", device, "--finetune", finetune, "--precision", "fp32"]
    argv += ["--epochs", str(epochs), "--out", str(out), "--json"]
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        return {"finetune": finetune, "exit": done.returncode, "error": done.stderr.strip().splitlines()[-3:]}
    data = json.loads(done.stdout)
    return {
        "finetune": finetune,
        "wall_s": round(wall, 1),
        "training_s": data["phases_s"].get("training"),
        "phases_s": data["phases_s"],
        "pick": data["pick"],
    }


def stacked(dataset, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(xs).to(device), torch.tensor(ys).to(device)


def ceiling(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, epochs: int, device: str) -> float:
    """Images/s of the plainest fast loop: bf16 autocast, channels-last, the data on the device already."""
    model.to(device).train()
    amp = device == "cuda"
    if amp:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def epoch() -> int:
        order = torch.randperm(len(x), device=device)
        seen = 0
        for i in range(0, len(x) - batch + 1, batch):
            idx = order[i : i + batch]
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            seen += batch
        return seen

    epoch()  # warm-up: cuDNN's algorithm choice, the allocator
    sync(device)
    t0, images = time.perf_counter(), 0
    for _ in range(epochs):
        images += epoch()
    sync(device)
    return images / (time.perf_counter() - t0)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def inference_pass(model: nn.Module, x: torch.Tensor, batch: int, device: str) -> float:
    """Seconds for one forward pass over x (no grad), as the head fine-tuning's feature pass does."""
    model.to(device).eval()
    with torch.no_grad():
        model(x[:batch])  # warm-up
        sync(device)
        t0 = time.perf_counter()
        for i in range(0, len(x), batch):
            model(x[i : i + batch])
        sync(device)
    return time.perf_counter() - t0


def oom_retry(a, task, classes: int, batch: int, device: str) -> dict:
    """Cap the allocator below one training step's peak at `batch`: the first attempt must run out of memory."""
    trn = build_trn(a, None, classes)
    torch.cuda.reset_peak_memory_stats()
    train_full(trn, task.train, task.val, TrainConfig("full", 1, batch_size=batch, device=device))
    peak = torch.cuda.max_memory_allocated()
    total = torch.cuda.get_device_properties(0).total_memory
    fraction = 0.75 * peak / total
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(fraction)
    warnings: list[str] = []
    import logging

    class Catch(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())

    handler = Catch()
    logging.getLogger("netcut.training").addHandler(handler)
    try:
        _, result = train_full(
            build_trn(a, None, classes), task.train, task.val, TrainConfig("full", 1, batch_size=batch, device=device)
        )
        outcome = {"finished": True, "accuracy": round(result.accuracy, 4)}
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the figure is whether the retry worked
        outcome = {"finished": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        logging.getLogger("netcut.training").removeHandler(handler)
        torch.cuda.set_per_process_memory_fraction(1.0)
    return {
        "batch": batch,
        "peak_gib_at_batch": round(peak / 2**30, 2),
        "cap_gib": round(fraction * total / 2**30, 2),
        "retried": [w for w in warnings if "out of GPU memory" in w],
        **outcome,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per measurement (default: 3)")
    parser.add_argument("--batch", type=int, default=64, help="the search's batch size (default: 64)")
    parser.add_argument("--input-size", type=int, default=64, help="the built-in search's input (default: 64)")
    parser.add_argument("--skip-search", action="store_true", help="only the throughput and OOM figures")
    args = parser.parse_args(argv)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print(
            json.dumps({"error": "torch sees no CUDA GPU here; this bench needs one (or --device cpu for a smoke run)"})
        )
        return 2
    out: dict = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (smoke run: figures mean nothing)",
        "torch": torch.__version__,
        "network": NETWORK,
        "input_size": args.input_size,
        "batch": args.batch,
        "epochs": args.epochs,
    }
    torch.manual_seed(0)
    task = load_task("builtin", args.input_size, BUILTIN_NORMALIZATION)
    classes = len(task.classes)
    a = analyse(models.build(NETWORK, "builtin"), NETWORK, args.input_size)
    cfg = TrainConfig("full", args.epochs, batch_size=args.batch, device=device)

    _, full = train_full(build_trn(a, None, classes), task.train, task.val, cfg)
    x, y = stacked(task.train_plain, device)
    best = ceiling(build_trn(a, None, classes), x, y, args.batch, args.epochs, device)
    out["full"] = {
        "train_full_images_per_s": round(full.images_per_second, 1),
        "ceiling_images_per_s": round(best, 1),
        "fraction_of_ceiling": round(full.images_per_second / best, 3),
        "goal": ">= 0.70",
    }
    print(json.dumps({"full": out["full"]}), file=sys.stderr)

    cuts = [*candidate_cuts(a), None]
    t0 = time.perf_counter()
    train_heads(
        a, cuts, task.train_plain, task.val, classes, TrainConfig("head", 30, batch_size=args.batch, device=device)
    )
    sync(device)
    heads_s = time.perf_counter() - t0
    val_x, _ = stacked(task.val, device)
    one_pass = inference_pass(build_trn(a, None, classes), torch.cat([x, val_x]), 2 * args.batch, device)
    out["head"] = {
        "cuts": len(cuts),
        "train_heads_s": round(heads_s, 3),
        "one_inference_pass_s": round(one_pass, 3),
        "ratio": round(heads_s / one_pass, 2),
        "goal": "<= 1.5",
    }
    print(json.dumps({"head": out["head"]}), file=sys.stderr)

    if device == "cuda":
        out["oom"] = oom_retry(a, task, classes, 4 * args.batch, device)
        print(json.dumps({"oom": out["oom"]}), file=sys.stderr)
    if not args.skip_search:
        with tempfile.TemporaryDirectory() as tmp:
            env_epochs = max(1, args.epochs)
            out["search"] = [
                search(device, finetune, env_epochs, Path(tmp) / finetune) for finetune in ("full", "head")
            ]
    out["cpu_count"] = os.cpu_count()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
