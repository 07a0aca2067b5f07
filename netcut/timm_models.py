"""timm's networks by name: `timm/NAME[.TAG]`, with timm's own weights and pretrained configuration.

timm is an optional extra (`pip install 'netcut[timm]'`). Its pretrained weights come through timm itself
(the Hugging Face hub and its cache); `none` gives random weights (latency does not depend on them); a
file gives a state_dict of the network as timm builds it.
"""

from __future__ import annotations

import difflib
import logging
import os
from typing import TYPE_CHECKING

from .errors import NetcutError

if TYPE_CHECKING:
    from torch import nn

PREFIX = "timm/"
INSTALL = "pip install 'netcut[timm]'"
# Weights of the network's pretrained tag (the one in the name, else timm's default for the architecture).
PRETRAINED = "DEFAULT"
# The curated edge set next to torchvision's (search --models without a list); README lists their MACs.
EDGE_MODELS = (
    "timm/mobilenetv4_conv_small",
    "timm/efficientnet_lite0",
    "timm/lcnet_100",
    "timm/ghostnet_100",
    "timm/repvit_m0_9",
)


def is_timm(name: str) -> bool:
    return name.startswith(PREFIX)


def _timm():
    try:
        import timm
    except ImportError:
        raise NetcutError(f"timm models need timm: {INSTALL}") from None
    return timm


def split(name: str) -> tuple[str, str | None]:
    """`timm/NAME.TAG` -> (NAME, TAG or None)."""
    arch, _, tag = name.removeprefix(PREFIX).partition(".")
    return arch, tag or None


def check(name: str) -> None:
    """An unknown architecture or tag, with timm's close matches."""
    timm = _timm()
    arch, tag = split(name)
    if not arch or not timm.is_model(arch):
        names = timm.list_models()
        close = difflib.get_close_matches(arch, names, n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(PREFIX + c for c in close)}?" if close else ""
        raise NetcutError(f"timm has no model {arch!r}.{hint} timm.list_models() lists them all")
    if tag is not None:
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
        if tag not in tags:
            raise NetcutError(
                f"timm's {arch} has no pretrained tag {tag!r}; its tags: {', '.join(tags) or 'none'}", option="weights"
            )


def pretrained_config(name: str) -> dict:
    """What timm's pretrained configuration says the network expects: input size, normalisation,
    interpolation and crop, as a plain dict for model.json."""
    from timm.models import get_pretrained_cfg

    arch, tag = split(name)
    cfg = get_pretrained_cfg(f"{arch}.{tag}" if tag else arch)
    if cfg is None:
        return {}
    return {
        "source": f"timm pretrained_cfg of {cfg.architecture}{'.' + cfg.tag if cfg.tag else ''}",
        "input_size": list(cfg.input_size),
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "interpolation": cfg.interpolation,
        "crop_pct": cfg.crop_pct,
    }


def default_input_size(name: str) -> int:
    size = pretrained_config(name).get("input_size")
    return int(size[-1]) if size else 224


def _cached_weights(cfg) -> str | None:  # noqa: ANN001 - timm's PretrainedCfg
    """The weights file in the Hugging Face cache, if it is there (nothing is downloaded)."""
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = (cfg.hf_hub_id or "").partition("@")
    if not repo:
        return None
    names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    for filename in names:
        found = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(found, str):
            return found
    return None


def _fetch_hint(cfg, name: str) -> str:  # noqa: ANN001 - timm's PretrainedCfg
    where = f"https://huggingface.co/{cfg.hf_hub_id}" if cfg.hf_hub_id else cfg.url
    return (
        f"fetch them on a machine that is online (python -c \"import timm; timm.create_model('{cfg.architecture}"
        f"{'.' + cfg.tag if cfg.tag else ''}', pretrained=True)\" fills the Hugging Face cache, or download "
        f"{where}) and copy the cache here, or give the weights file itself with --weights FILE"
    )


def build(name: str, weights: str) -> nn.Module:
    """The network as timm builds it (its trainable form), with random, pretrained or a file's weights."""
    timm = _timm()
    check(name)
    arch, tag = split(name)
    if weights.lower() == "none":
        return timm.create_model(arch, pretrained=False)
    if weights != PRETRAINED:
        from .models import checkpoint_state, load_state  # a file: models checked it exists

        model = timm.create_model(arch, pretrained=False)
        load_state(model, checkpoint_state(weights), weights)
        return model
    from timm.models import get_pretrained_cfg

    full = f"{arch}.{tag}" if tag else arch
    cfg = get_pretrained_cfg(full)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise NetcutError(f"timm publishes no pretrained weights for {full}; use none or a file", option="weights")
    offline = os.environ.get("NETCUT_OFFLINE") or os.environ.get("HF_HUB_OFFLINE")
    if offline and _cached_weights(cfg) is None:
        raise NetcutError(
            f"timm's weights for {full} are not in the Hugging Face cache and this machine is offline "
            f"(NETCUT_OFFLINE or HF_HUB_OFFLINE is set): {_fetch_hint(cfg, name)}",
            option="weights",
        )
    hub_log = logging.getLogger("huggingface_hub")
    propagate, hub_log.propagate = hub_log.propagate, False  # the hub prints its retries itself: once is enough
    try:
        return timm.create_model(full, pretrained=True)
    except (OSError, RuntimeError, ValueError) as exc:  # hub errors are OSErrors; a bad file a RuntimeError
        raise NetcutError(
            f"timm could not load its weights for {full} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
            f"this machine may be offline: {_fetch_hint(cfg, name)}",
            option="weights",
        ) from None
    finally:
        hub_log.propagate = propagate
