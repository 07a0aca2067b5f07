"""Networks by name: torchvision's classifiers, timm's (`timm/NAME[.TAG]`) or a user's
`package.module:factory`, with weights.

Weights are `none` (random: latency does not depend on them), a torchvision weights
name (`DEFAULT`, `IMAGENET1K_V1`, ...), `DEFAULT` for timm's pretrained tag, or a path to a
state_dict or checkpoint. Networks come in their deploy form (blocks that fuse for inference
fused, see netcut.reparam) unless the trainable form is asked for.
"""

from __future__ import annotations

import difflib
import importlib
import json
import logging
import os
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import nn

from . import reparam, timm_models
from .errors import NetcutError

log = logging.getLogger(__name__)

# Their constructors warn that the default init will change unless it is given.
_EXPLICIT_INIT = {"googlenet", "inception_v3"}


def torchvision_models() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _unknown_model(name: str) -> NetcutError:
    close = difflib.get_close_matches(name, torchvision_models(), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return NetcutError(
        f"unknown model {name!r}.{hint} Use a torchvision classification model name "
        "(torchvision.models.list_models(module=torchvision.models)), timm/NAME for timm's, or package.module:factory"
    )


def _custom_factory(spec: str):
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise NetcutError(f"cannot import {module_name!r} for model {spec!r}: {exc}; is it on PYTHONPATH?") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise NetcutError(f"module {module_name!r} has no {attr!r} (from model {spec!r})") from None


def checkpoint_state(path: Path | str) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise NetcutError(
            f"cannot read weights file {path}: {type(exc).__name__}: {str(exc)[:200]}. "
            "Pass a state_dict saved with torch.save(model.state_dict(), PATH)"
        ) from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise NetcutError(
            f"{path} does not hold a state_dict (a dict of tensors); save one with torch.save(model.state_dict(), PATH)"
        )
    state = OrderedDict((k.removeprefix("module."), v) for k, v in obj.items())
    # torch.save(model.state_dict()) keeps each module's state version here; modules that changed their
    # state's layout (torchvision's MNASNet, DenseNet) refuse a state without it.
    metadata = getattr(obj, "_metadata", None)
    if metadata is not None:
        state._metadata = OrderedDict((k.removeprefix("module."), v) for k, v in metadata.items())
    return state


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load weights strictly, or explain exactly which keys and shapes disagree."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} wrong shapes (e.g. {'; '.join(wrong[:2])})")
        raise NetcutError(
            f"weights in {source} do not fit this model: {'; '.join(parts)}. "
            "Are they for another architecture or number of classes?"
        )
    model.load_state_dict(state)


def _torchvision_weights(name: str, weights: str):
    try:
        enum = torchvision.models.get_model_weights(name)
    except (KeyError, ValueError):
        raise NetcutError(
            f"torchvision has no pretrained weights for {name!r}; use none, or a weights file", option="weights"
        ) from None
    try:
        return enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        valid = ", ".join(["DEFAULT"] + [w.name for w in enum])
        raise NetcutError(
            f"unknown weights {weights!r} for {name}; valid: {valid}, none, or a file path", option="weights"
        ) from None


def _fetch_torchvision_weights(weights: torchvision.models.WeightsEnum) -> dict[str, torch.Tensor]:
    """The weights' state dict from torch's hub cache, downloading them if the machine is online."""
    filename = os.path.basename(weights.url)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if os.environ.get("NETCUT_OFFLINE") and not cached.is_file():
        raise NetcutError(
            f"torchvision weights {weights} are not in the cache ({cached}) and NETCUT_OFFLINE is set, "
            f"so nothing is downloaded. Download {weights.url} elsewhere and give the file as the weights, "
            f"or copy it to {cached}",
            option="weights",
        )
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as exc:
        raise NetcutError(
            f"torchvision weights {weights} are not in the cache ({cached}) and could not be "
            f"downloaded ({type(exc).__name__}: {str(exc)[:120]}); this machine may be offline. "
            f"Download {weights.url} elsewhere and give the file as the weights, or copy it to {cached}",
            option="weights",
        ) from None


BUILTIN_DIR = Path(__file__).parent / "builtin"
# More backbones made by scripts/pretrain_builtin.py --out DIR: folders, separated like PATH.
BUILTIN_PATH_VAR = "NETCUT_BUILTIN_PATH"


def builtin_dirs() -> list[Path]:
    """Where built-in backbones are looked for: the package's own folder, then NETCUT_BUILTIN_PATH's."""
    extra = [Path(p).expanduser() for p in os.environ.get(BUILTIN_PATH_VAR, "").split(os.pathsep) if p]
    return [BUILTIN_DIR] + extra


def _builtin_entries() -> dict[str, tuple[dict, Path]]:
    """name -> (its manifest entry, its weights file); the first folder that has a network wins."""
    found: dict[str, tuple[dict, Path]] = {}
    for folder in builtin_dirs():
        path = folder / "manifest.json"
        if not path.is_file():
            continue
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise NetcutError(
                f"{path} is not a readable backbone manifest ({exc}); remake it with scripts/pretrain_builtin.py --out"
            ) from None
        for name, meta in manifest.items():
            if name not in found and (folder / f"{name}.pt").is_file():
                found[name] = (meta, folder / f"{name}.pt")
    return found


def builtin_manifest() -> dict:
    return {name: meta for name, (meta, _) in _builtin_entries().items()}


def builtin_models() -> list[str]:
    return sorted(_builtin_entries())


def _builtin(name: str) -> nn.Module:
    """Backbones the project pretrained itself (scripts/pretrain_builtin.py), shipped in the package.
    build() has checked that `name` has built-in weights."""
    meta, path = _builtin_entries()[name]
    model = torchvision.models.get_model(name, weights=None, num_classes=meta["num_classes"])
    state = torch.load(path, map_location="cpu", weights_only=True)
    load_state(model, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, f"built-in {name}")
    return model.eval()


FORMS = ("deploy", "train")


def build(name: str, weights: str = "none", num_classes: int | None = None, form: str = "deploy") -> nn.Module:
    """The network, in eval mode, with the requested weights (none, builtin, a torchvision or timm name, a
    file). form "deploy" (default): blocks that fuse for inference are fused, as the board runs them;
    "train": the form that trains (the same network when nothing fuses)."""
    if form not in FORMS:
        raise NetcutError(f"unknown form {form!r}; use one of: {', '.join(FORMS)}")
    model = _trainable(name, weights or "none").eval()
    if form == "train" or not reparam.needs_fusing(model):
        return model
    size = default_input_size(name)
    return reparam.fused_checked(model, (1, 3, size, size), name)


def _trainable(name: str, weights: str) -> nn.Module:
    check(name, weights)
    if weights == "builtin":
        return _builtin(name)
    if timm_models.is_timm(name):
        return timm_models.build(name, weights)
    if ":" in name:
        model = _custom_factory(name)()
        if not isinstance(model, nn.Module):
            raise NetcutError(f"{name} returned {type(model).__name__}, not a torch.nn.Module")
        if weights.lower() != "none":
            load_state(model, checkpoint_state(Path(weights)), weights)
        return model
    is_file = _is_weights_file(weights)
    if weights.lower() != "none" and not is_file:
        tv_weights = _torchvision_weights(name, weights)
        _fetch_torchvision_weights(tv_weights)  # a clear error when offline and not cached
        # torchvision's builder also sets what the weights expect (e.g. transform_input).
        return torchvision.models.get_model(name, weights=tv_weights)
    kwargs = {"init_weights": True} if name in _EXPLICIT_INIT else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    if is_file:
        load_state(model, checkpoint_state(Path(weights)), weights)
    return model


def _is_weights_file(weights: str) -> bool:
    return Path(weights).exists() or weights.endswith((".pt", ".pth", ".ckpt", ".bin"))


def check(name: str, weights: str = "none") -> None:
    """What build() would refuse, found without building, loading or downloading anything: an unknown
    network, missing built-in weights, a torchvision weights name the network lacks, a missing file."""
    weights = weights or "none"
    if timm_models.is_timm(name):
        timm_models.check(name)
        if weights == "builtin":
            raise NetcutError(
                f"no built-in weights for {name}; use {timm_models.PRETRAINED} (timm's pretrained weights), "
                "none, or a file",
                option="weights",
            )
        if weights.lower() not in ("none", timm_models.PRETRAINED.lower()) and not Path(weights).is_file():
            raise NetcutError(
                f"weights {weights!r} for {name}: give {timm_models.PRETRAINED} (timm's pretrained weights), "
                "none, or an existing state_dict file",
                option="weights",
            )
        return
    if ":" in name:
        _custom_factory(name)
        if weights.lower() != "none" and not Path(weights).is_file():
            raise NetcutError(f"custom models take weights from a file; {weights!r} is not a file")
        return
    if name not in torchvision_models():
        raise _unknown_model(name)
    if weights == "builtin":
        if name not in _builtin_entries():
            raise NetcutError(
                f"no built-in weights for {name!r}; built-in models: "
                f"{', '.join(builtin_models()) or 'none'} (make more with "
                f"scripts/pretrain_builtin.py --out DIR and add DIR to {BUILTIN_PATH_VAR})"
            )
    elif weights.lower() != "none":
        if _is_weights_file(weights):
            if not Path(weights).is_file():
                raise NetcutError(f"weights file {weights} does not exist")
        else:
            _torchvision_weights(name, weights)


def default_input_size(name: str) -> int:
    if timm_models.is_timm(name):
        return timm_models.default_input_size(name)
    return 299 if name == "inception_v3" else 224


def preprocessing(name: str) -> dict:
    """What the network's pretrained weights expect of an image, where their source publishes it: timm's
    pretrained configuration (input size, mean, std, interpolation, crop). Empty otherwise."""
    return timm_models.pretrained_config(name) if timm_models.is_timm(name) else {}
