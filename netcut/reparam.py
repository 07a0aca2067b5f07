"""Networks that train in one form and deploy in another (MobileOne, RepViT, FastViT, RepVGG...).

Their blocks train with parallel branches and fuse into single convolutions for inference. A module
says it can fuse by one of the methods timm's `reparameterize_model` calls (`fuse`, `reparameterize`,
`switch_to_deploy`). Such a block is one node of the traced graph (a leaf), so no cut falls inside it,
and fusing it replaces it whole. Latency is measured on the fused (deploy) form only.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from .errors import NetcutError

log = logging.getLogger(__name__)

METHODS = ("fuse", "reparameterize", "switch_to_deploy")
# Fusing folds batch norms and branches: float32 sums in another order, nothing more.
TOLERANCE = 1e-4


def fusable(module: nn.Module) -> bool:
    return any(callable(getattr(module, m, None)) for m in METHODS)


def fusable_types(model: nn.Module) -> set[type[nn.Module]]:
    """The classes of the model's blocks that fuse (not the model itself): leaves for the tracer."""
    return {type(m) for name, m in model.named_modules() if name and fusable(m)}


def needs_fusing(model: nn.Module) -> bool:
    return bool(fusable_types(model))


def deploy_form(model: nn.Module) -> nn.Module:
    """A fused copy of the model (the model itself when nothing fuses), in eval mode."""
    if not needs_fusing(model):
        return model.eval()
    try:
        from timm.utils import reparameterize_model
    except ImportError:
        kinds = ", ".join(sorted(t.__name__ for t in fusable_types(model)))
        raise NetcutError(
            f"{type(model).__name__} has blocks that fuse for deployment ({kinds}), and fusing them needs timm: "
            "pip install 'netcut[timm]'"
        ) from None
    return reparameterize_model(model.eval()).eval()


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def fused_checked(model: nn.Module, input_shape: tuple[int, ...], what: str) -> nn.Module:
    """The deploy form of a trained network, checked to compute what the trained form computes."""
    if not needs_fusing(model):
        return model.eval()
    fused = deploy_form(model)
    x = torch.randn(*input_shape)
    with torch.no_grad():
        error = relative_difference(fused(x), model.eval()(x))
    if not error < TOLERANCE:
        raise NetcutError(
            f"fusing {what} for deployment changed its output (relative difference {error:.1e}); "
            "its blocks' fuse/reparameterize methods disagree with their training form"
        )
    return fused
