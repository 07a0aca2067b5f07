"""Retraining when the GPU runs out of memory: one retry at half the batch, then a clear error.

There is no GPU in CI, so the out-of-memory error is injected: by the network itself when it
trains on a batch above a limit (full fine-tuning), or by the feature pass (head training).
Everything else is the real training code on real tensors.
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import netcut.training as training
from netcut.cuts import analyse
from netcut.errors import NetcutError
from netcut.training import TrainConfig, train_full, train_heads, with_smaller_batch_on_oom


class Picky(nn.Module):
    """A small classifier that runs out of (pretend) GPU memory on training batches above `limit`,
    after `after` good steps, like a real network meeting a larger batch mid-epoch."""

    def __init__(self, limit: int, after: int = 0):
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU())
        self.head = nn.Linear(16, 2)
        self.limit, self.after, self.calls = limit, after, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if x.shape[0] > self.limit and self.calls > self.after:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return self.head(self.body(x))


def two_blobs(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 4, generator=g) * 0.5 + (y.float().unsqueeze(1) * 2 - 1)
    return TensorDataset(x, y)


def test_full_fine_tuning_retries_at_half_the_batch_from_the_pretrained_weights(caplog):
    train, val = two_blobs(256, 0), two_blobs(64, 1)
    cfg = TrainConfig("full", epochs=3, batch_size=64, seed=0)
    # Two steps at batch 64 change the weights before memory runs out; the retry must not start from them.
    picky = Picky(limit=40, after=2)
    with caplog.at_level(logging.WARNING, logger="netcut.training"):
        trained, result = train_full(picky, train, val, cfg)
    assert "retrying with batch size 32" in caplog.text
    assert result.accuracy > 0.9

    # The same training run at batch 32 from the start, with nothing injected.
    same, expected = train_full(Picky(limit=10_000), train, val, TrainConfig("full", epochs=3, batch_size=32, seed=0))
    for key, value in same.state_dict().items():
        assert torch.equal(trained.state_dict()[key], value), key
    assert result.accuracy == expected.accuracy


def test_running_out_of_memory_twice_is_a_clear_error():
    with pytest.raises(NetcutError, match=r"out of GPU memory even at batch size 32.*train on the CPU") as failed:
        train_full(Picky(limit=10), two_blobs(128, 0), two_blobs(32, 1), TrainConfig("full", 1, batch_size=64))
    assert failed.value.option == "device"  # the command line names its flag: --device cpu


def test_the_retry_halves_the_batch_once():
    tried = []

    def run(batch):
        tried.append(batch)
        if batch > 100:
            raise torch.cuda.OutOfMemoryError("injected")
        return batch

    assert with_smaller_batch_on_oom(run, 128) == 64
    assert tried == [128, 64]
    assert with_smaller_batch_on_oom(run, 1) == 1  # nothing to halve, nothing retried
    assert tried == [128, 64, 1]


def test_head_training_retries_its_feature_pass_at_half_the_batch(monkeypatch, caplog):
    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.features(x)), 1))

    a = analyse(Small().eval(), "small", 8)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (96,), generator=g)
    x = torch.randn(96, 3, 8, 8, generator=g) + y.view(-1, 1, 1, 1).float() * 2
    data = TensorDataset(x, y)
    real, batches = training.cached_features, []

    def feature_pass(*args, **kwargs):
        batches.append(args[5] if len(args) > 5 else kwargs.get("batch_size"))
        if batches[-1] > 64:
            raise torch.cuda.OutOfMemoryError("injected")
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "cached_features", feature_pass)
    cut = a.cuts[-1].name
    with caplog.at_level(logging.WARNING, logger="netcut.training"):
        results = train_heads(a, [cut, None], data, data, 2, TrainConfig("head", 5, batch_size=64))
    assert batches == [128, 64, 64]  # the train pass failed at 128; both passes ran at 64
    assert "retrying with batch size 64" in caplog.text
    assert results[cut][1].accuracy > 0.9 and results[None][1].accuracy > 0.9


def test_a_constant_feature_does_not_blow_up_the_folded_head():
    """A feature constant over the training images (a dead channel) must not get a weight a million times
    the others: that head fits noise and cannot be quantized (one weight dwarfs its row)."""
    from netcut.training import fit_linear

    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 8, generator=g) + torch.nn.functional.one_hot(y, 8).float() * 3
    x[:, 7] = 0.5 + 1e-7 * torch.randn(60, generator=g)  # dead, up to float noise
    layer, val_acc, _ = fit_linear(x, y, x, y, 3, TrainConfig("head", 5, seed=0))
    assert val_acc > 0.9
    assert layer.weight[:, 7].abs().max() < 100 * layer.weight[:, :7].abs().max()
