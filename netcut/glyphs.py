"""A procedural source task for pretraining: glyphs made of random strokes.

Each class is a fixed set of 2-4 quadratic Bezier strokes; every image of it is drawn
with a random affine jitter, stroke width, colours and noise. Images come from a seeded
generator, so the task is as large as one wants and exactly reproducible. Networks
pretrained on it learn strokes, curves and their arrangements, which is what transfer
to a simpler, different task (handwritten digits) needs.
"""

from __future__ import annotations

import numpy as np

POINTS_PER_STROKE = 20


def glyph_bank(num_classes: int, seed: int = 0) -> np.ndarray:
    """Control points: (classes, 4 strokes, 3 points, xy) in [0.15, 0.85]; unused strokes are NaN."""
    rng = np.random.default_rng(seed)
    bank = rng.uniform(0.15, 0.85, (num_classes, 4, 3, 2))
    strokes = rng.integers(2, 5, num_classes)
    for k, n in enumerate(strokes):
        bank[k, n:] = np.nan
    return bank


def _curve_points(bank: np.ndarray, labels: np.ndarray) -> np.ndarray:
    t = np.linspace(0, 1, POINTS_PER_STROKE)[:, None]
    ctrl = bank[labels]  # (B, 4, 3, 2)
    p0, p1, p2 = ctrl[:, :, 0, None], ctrl[:, :, 1, None], ctrl[:, :, 2, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2  # (B, 4, P, 2)
    return pts.reshape(len(labels), -1, 2)


def render(bank: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Images (B, 3, size, size) in [0, 1]."""
    b = len(labels)
    pts = _curve_points(bank, labels) - 0.5
    angle = rng.uniform(-0.3, 0.3, b)
    scale = rng.uniform(0.8, 1.1, b)
    rot = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    pts = np.einsum("bij,bpj->bpi", rot * scale[:, None, None], pts) + 0.5 + rng.uniform(-0.08, 0.08, (b, 1, 2))
    pts = np.where(np.isnan(pts), 1e3, pts).astype(np.float32)  # unused strokes: far away
    grid = (
        (np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="xy"), -1).reshape(-1, 2) + 0.5) / size
    ).astype(np.float32)
    d2 = ((grid[None, :, None, :] - pts[:, None, :, :]) ** 2).sum(-1).min(-1)  # (B, pixels)
    width = rng.uniform(0.03, 0.065, b)[:, None].astype(np.float32)
    ink = np.exp(-d2 / (2 * width**2)).reshape(b, 1, size, size)
    fg = rng.uniform(0.5, 1.0, (b, 3, 1, 1))
    bg = rng.uniform(0.0, 0.4, (b, 3, 1, 1))
    images = bg * (1 - ink) + fg * ink + rng.normal(0, 0.04, (b, 3, size, size))
    return np.clip(images, 0, 1).astype(np.float32)
