"""The values the host's options accept, in one light module (no torch, no grpc), so that building
the command line stays fast and each list is written once."""

from __future__ import annotations

import importlib.util

from netcut.timm_models import EDGE_MODELS as TIMM_EDGE_MODELS
from netcut.vocabulary import GRANULARITIES, PRECISIONS, QUANTILES  # noqa: F401  (re-exported for the CLI)

RUNTIMES = ("onnxruntime", "litert")
FORMAT_OF = {"onnxruntime": "onnx", "litert": "tflite"}  # the model format each runtime runs
RUNTIME_OF = {fmt: runtime for runtime, fmt in FORMAT_OF.items()}
FORMATS = tuple(RUNTIME_OF)
MODES = ("e2e", "layers", "both")  # how `profile` measures a network
ESTIMATORS = ("empirical", "analytical", "kernels")
FINETUNE = ("head", "full")
DEFAULT_ROUNDS = 1
# The networks a search of the user's own data considers when --models is not given: torchvision's, and
# timm's curated edge set where timm is installed.
DEFAULT_MODELS = ("mobilenet_v3_small", "mobilenet_v2", "resnet18", "efficientnet_b0", "resnet50")


def default_models() -> tuple[str, ...]:
    return DEFAULT_MODELS + (TIMM_EDGE_MODELS if importlib.util.find_spec("timm") else ())


LOCAL = "local"  # the target that starts an agent on this machine for the duration of a command
