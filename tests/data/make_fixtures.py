"""Regenerate the small model files the tests use: python tests/data/make_fixtures.py

tiny.tflite and tiny_dynamic.tflite are committed so agent tests can exercise LiteRT
without the 1.1 GB converter; this script (needs the `convert` extra) makes them again.
"""

from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).parent


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    ).eval()


def main() -> None:
    import litert_torch

    litert_torch.convert(tiny_net(), (torch.randn(1, 3, 16, 16),)).export(str(HERE / "tiny.tflite"))
    print("wrote", HERE / "tiny.tflite")


if __name__ == "__main__":
    main()
