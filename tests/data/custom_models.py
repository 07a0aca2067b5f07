"""User-style model factories for the `package.module:factory` path."""

import torch
from torch import nn

from make_fixtures import tiny_net


def tiny() -> nn.Module:
    return tiny_net()


class Branchy(nn.Module):
    """Data-dependent control flow: the tracer cannot follow it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.conv(x)
        if x.sum() > 0:
            x = x * 2
        return self.fc(x.mean(dim=(2, 3)))


def branchy() -> nn.Module:
    return Branchy()


def not_a_module():
    return 42


def broken() -> nn.Module:
    """A factory with a bug in it: the error is not the user's input, so netcut-host keeps the traceback."""
    return {}["missing"]


@torch.fx.wrap
def refuse_export(x: torch.Tensor) -> torch.Tensor:
    """Runs as the identity, but fails while an ONNX exporter traces it (a network whose export breaks)."""
    if torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting() or torch.compiler.is_compiling():
        raise RuntimeError("this layer cannot be exported")
    return x


class ExportFails(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = refuse_export(self.conv(x))
        return self.fc(x.mean(dim=(2, 3)))


def export_fails() -> nn.Module:
    return ExportFails()


def sequential() -> nn.Module:
    """A plain nn.Sequential: its blocks are named 0, 1, 2..., so its cuts are called 2, 5 and 10."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


class _BadFuse(nn.Module):
    """A block whose reparameterize() is wrong: fused, it no longer computes what it trained to."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.branch = nn.Conv2d(3, 8, 1)
        self.fused = None

    def forward(self, x):
        if self.fused is not None:
            return self.fused(x)
        return self.conv(x) + self.branch(x)

    def reparameterize(self):
        self.fused = self.conv  # forgets the 1x1 branch
        del self.branch


def bad_fuse() -> nn.Module:
    return nn.Sequential(_BadFuse(), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))


def nested_branchy() -> nn.Module:
    """The untraceable block deep inside: the error names it."""
    return nn.Sequential(nn.Identity(), nn.Sequential(Branchy()))
