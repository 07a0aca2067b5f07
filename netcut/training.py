"""Retraining TRNs on the user's task (transfer learning).

- head: train only the new head on cached features. One pass of a backbone over the
  data computes the features at every chosen cut at once (the segments run in order
  and each chosen cut's output is pooled and kept), so many TRNs of one network cost
  about one forward pass plus tiny linear fits.
- full: fine-tune the whole TRN with augmentation; mixed precision on a GPU.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .cuts import NetworkAnalysis
from .errors import NetcutError
from .trn import HEAD_NAME, TrimmedNetwork, build_trn, global_pool

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class TrainConfig:
    finetune: str = "head"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.0  # 0: 1e-2 for heads, 1e-3 for full fine-tuning
    seed: int = 0
    device: str = "cpu"


@dataclass
class TrainResult:
    accuracy: float  # top-1 on the validation split
    train_accuracy: float
    epochs: int
    seconds: float
    images_per_second: float
    device: str
    finetune: str


def resolve_device(name: str) -> str:
    if name not in ("auto", "cpu", "cuda"):
        raise NetcutError(f"unknown device {name!r}; use auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise NetcutError("cuda was asked for, but torch sees no CUDA GPU here; use cpu, or auto", option="device")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _logits_module(full: TrimmedNetwork, a: NetworkAnalysis) -> nn.Module:
    last = list(full.children())[-1]
    return last.get_submodule(a.logits_node.target)


@torch.no_grad()
def cached_features(
    a: NetworkAnalysis,
    full: TrimmedNetwork,
    dataset: Dataset,
    cuts: list[str | None],
    device: str,
    batch_size: int = 128,
) -> tuple[dict[str | None, torch.Tensor], torch.Tensor]:
    """Pooled features at every requested cut (None: the input of the network's own classifier), one pass."""
    names = [c.name for c in a.cuts]
    wanted = {names.index(c): c for c in cuts if c is not None}
    need_full = None in cuts
    last_needed = len(names) if need_full else (max(wanted) if wanted else -1)
    segments = list(full.children())
    captured: list[torch.Tensor] = []
    hook = (
        _logits_module(full, a).register_forward_hook(lambda m, i, o: captured.append(i[0].flatten(1)))
        if need_full
        else None
    )
    full.to(device).eval()
    out: dict[str | None, list[torch.Tensor]] = {c: [] for c in cuts}
    labels = []
    try:
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            x = x.to(device)
            for i, segment in enumerate(segments[: last_needed + 1]):
                x = segment(x)
                if i in wanted:
                    out[wanted[i]].append(global_pool(x).float().cpu())
            if need_full:
                out[None].append(captured.pop().float().cpu())
            labels.append(y)
    finally:
        if hook:
            hook.remove()
    return {c: torch.cat(v) for c, v in out.items()}, torch.cat(labels)


def fit_linear(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    classes: int,
    cfg: TrainConfig,
) -> tuple[nn.Linear, float, float]:
    """A linear classifier on cached features: full-batch AdamW on standardised inputs."""
    torch.manual_seed(cfg.seed)
    # A feature (nearly) constant over the training images carries no information; dividing by its tiny std
    # would multiply its float noise, and the folded weight, by up to a million: such a head fits noise and
    # cannot be quantized (one weight dwarfs its row). A floor at 1% of the typical feature's std stops that.
    mean, std = train_x.mean(0), train_x.std(0)
    std = std.clamp_min(max(1e-6, 0.01 * float(std.median())))
    layer = nn.Linear(train_x.shape[1], classes)
    optimiser = torch.optim.AdamW(layer.parameters(), lr=cfg.lr or 1e-2, weight_decay=1e-3)
    xs = (train_x - mean) / std
    for _ in range(max(50, cfg.epochs * 10)):
        loss = nn.functional.cross_entropy(layer(xs), train_y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        # Fold the standardisation into the layer, so it applies to raw pooled features.
        weight = layer.weight / std
        bias = layer.bias - (layer.weight * mean / std).sum(1)
        folded = nn.Linear(train_x.shape[1], classes)
        folded.weight.copy_(weight)
        folded.bias.copy_(bias)
        train_acc = (folded(train_x).argmax(1) == train_y).float().mean().item()
        val_acc = (folded(val_x).argmax(1) == val_y).float().mean().item()
    return folded, val_acc, train_acc


def install_head(trn: TrimmedNetwork, a: NetworkAnalysis, linear: nn.Linear) -> None:
    """Put trained weights into a TRN's head (or the full network's own classifier layer)."""
    target = trn.head.fc if trn.cut_point is not None else _logits_module(trn, a)
    with torch.no_grad():
        target.weight.copy_(linear.weight.view_as(target.weight))
        target.bias.copy_(linear.bias)


def with_smaller_batch_on_oom(run: Callable[[int], T], batch: int) -> T:
    """run(batch); on a CUDA out-of-memory error, once more with half the batch, then a clear error."""
    for attempt in range(2):
        try:
            return run(batch)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if attempt:
                raise NetcutError(
                    f"out of GPU memory even at batch size {batch}; train on the CPU, at a smaller input size, "
                    "or fewer or lighter models",
                    option="device",
                ) from None
            batch = max(1, batch // 2)
            log.warning("out of GPU memory; retrying with batch size %d", batch)
    raise AssertionError("unreachable")


def train_heads(
    a: NetworkAnalysis,
    cuts: list[str | None],
    train_set: Dataset,
    val_set: Dataset,
    classes: int,
    cfg: TrainConfig,
    progress: Callable[[str], None] | None = None,
) -> dict[str | None, tuple[TrimmedNetwork, TrainResult]]:
    started = time.perf_counter()
    full = build_trn(a, None, classes)
    if progress:
        progress(f"{a.model_name}: features at {len(cuts)} cuts (one pass)")

    def features(batch: int):
        return (
            cached_features(a, full, train_set, cuts, cfg.device, batch),
            cached_features(a, full, val_set, cuts, cfg.device, batch),
        )

    (train_f, train_y), (val_f, val_y) = with_smaller_batch_on_oom(features, 2 * cfg.batch_size)
    feature_seconds = time.perf_counter() - started
    results = {}
    for cut in cuts:
        t0 = time.perf_counter()
        linear, val_acc, train_acc = fit_linear(train_f[cut], train_y, val_f[cut], val_y, classes, cfg)
        trn = build_trn(a, cut, classes)
        install_head(trn, a, linear)
        seconds = time.perf_counter() - t0 + feature_seconds / len(cuts)
        results[cut] = (
            trn.cpu().eval(),
            TrainResult(
                val_acc, train_acc, cfg.epochs, seconds, len(train_y) / max(feature_seconds, 1e-9), cfg.device, "head"
            ),
        )
    return results


def evaluate(model: nn.Module, dataset: Dataset, device: str, batch_size: int = 256) -> float:
    model.to(device).eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in DataLoader(dataset, batch_size=batch_size):
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
            total += len(y)
    return correct / max(total, 1)


def train_full(
    trn: TrimmedNetwork,
    train_set: Dataset,
    val_set: Dataset,
    cfg: TrainConfig,
    progress: Callable[[str], None] | None = None,
) -> tuple[TrimmedNetwork, TrainResult]:
    """Fine-tune everything; on a CUDA out-of-memory error retry once with half the batch."""
    initial = {k: v.detach().clone() for k, v in trn.state_dict().items()}
    attempts = 0

    def attempt(batch: int):
        nonlocal attempts
        if attempts:
            trn.load_state_dict(initial)  # a retry starts from the pretrained weights, not a half-trained state
        attempts += 1
        return _train_full(trn, train_set, val_set, cfg, batch, progress)

    return with_smaller_batch_on_oom(attempt, cfg.batch_size)


def _train_full(
    trn: TrimmedNetwork,
    train_set: Dataset,
    val_set: Dataset,
    cfg: TrainConfig,
    batch: int,
    progress: Callable[[str], None] | None,
) -> tuple[TrimmedNetwork, TrainResult]:
    torch.manual_seed(cfg.seed)
    device = cfg.device
    trn.to(device)
    head_params = [p for n, p in trn.named_parameters() if n.startswith(HEAD_NAME + ".")]
    body = [p for n, p in trn.named_parameters() if not n.startswith(HEAD_NAME + ".")]
    lr = cfg.lr or 1e-3
    optimiser = torch.optim.AdamW(
        [{"params": body, "lr": lr}, {"params": head_params, "lr": lr * 10}], weight_decay=1e-4
    )
    amp = device == "cuda"
    # On a GPU the per-image augmentation must not starve it: loader processes decode and augment ahead, into
    # pinned memory, and the network runs channels-last (what the tensor cores want). On the CPU the training
    # itself needs the cores: no loader processes.
    workers = min(8, max(1, (os.cpu_count() or 2) - 1)) if amp else 0
    loader = DataLoader(
        train_set,
        batch_size=batch,
        shuffle=True,
        drop_last=len(train_set) > batch,
        generator=torch.Generator().manual_seed(cfg.seed),
        num_workers=workers,
        pin_memory=amp,
        persistent_workers=workers > 0,
    )
    layout = torch.channels_last if amp else torch.contiguous_format
    trn.to(memory_format=layout)
    steps = max(1, cfg.epochs * len(loader))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=[lr, lr * 10], total_steps=steps, pct_start=0.2)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    best, best_state, images, train_seconds = -1.0, None, 0, 0.0
    for epoch in range(cfg.epochs):
        trn.train()
        t0 = time.perf_counter()
        correct, seen = torch.zeros((), dtype=torch.long, device=device), 0  # summed on the device: no sync a step
        for x, y in loader:
            x = x.to(device, non_blocking=True, memory_format=layout)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
                logits = trn(x)
                loss = nn.functional.cross_entropy(logits, y)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            schedule.step()
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        if device == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - t0
        correct = int(correct)
        images += seen
        accuracy = evaluate(trn, val_set, device)
        if accuracy > best:
            best, best_state = accuracy, {k: v.detach().clone() for k, v in trn.state_dict().items()}
        if progress:
            progress(f"epoch {epoch + 1}/{cfg.epochs}: val {accuracy:.3f}, train {correct / max(seen, 1):.3f}")
    trn.load_state_dict(best_state)
    trn.to(memory_format=torch.contiguous_format)  # exported and saved as every other network
    return trn.cpu().eval(), TrainResult(
        best, correct / max(seen, 1), cfg.epochs, train_seconds, images / max(train_seconds, 1e-9), device, "full"
    )
