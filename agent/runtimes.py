"""The inference runtimes the agent can time (onnxruntime and LiteRT): their names and what is installed.
The sessions that run models are in netcut_agent.sessions (the benchmark worker's side).

A Session hides the runtime's API behind three calls: prepare the inputs once, run
(the only thing timed), and read the per-layer profile where the runtime has one.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from dataclasses import dataclass, field

from .errors import FailedPrecondition, InvalidArgument

log = logging.getLogger(__name__)

ONNXRUNTIME = "onnxruntime"
LITERT = "litert"
RUNTIMES = (ONNXRUNTIME, LITERT)
FORMAT_OF_RUNTIME = {ONNXRUNTIME: "onnx", LITERT: "tflite"}


@dataclass
class RuntimeInfo:
    name: str
    available: bool
    version: str = ""
    execution_providers: list[str] = field(default_factory=list)
    unavailable_reason: str = ""
    layer_profile: bool = False
    package: str = ""


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _litert_module():
    """ai-edge-litert's Interpreter, or tflite-runtime's where only that is installed."""
    for module, dist in (
        ("ai_edge_litert.interpreter", "ai-edge-litert"),
        ("tflite_runtime.interpreter", "tflite-runtime"),
    ):
        try:
            return importlib.import_module(module), dist
        except ImportError:
            continue
    return None, ""


def discover() -> list[RuntimeInfo]:
    infos = []
    try:
        import onnxruntime as ort

        infos.append(
            RuntimeInfo(
                ONNXRUNTIME,
                True,
                ort.__version__,
                list(ort.get_available_providers()),
                layer_profile=True,
                package="onnxruntime",
            )
        )
    except ImportError as exc:
        infos.append(
            RuntimeInfo(
                ONNXRUNTIME,
                False,
                unavailable_reason=f"onnxruntime is not installed ({exc}); "
                "install it with: pip install 'netcut[agent]'",
                package="onnxruntime",
            )
        )
    module, dist = _litert_module()
    if module is not None:
        infos.append(RuntimeInfo(LITERT, True, _version(dist), ["CPU"], layer_profile=False, package=dist))
    else:
        infos.append(
            RuntimeInfo(
                LITERT,
                False,
                unavailable_reason="LiteRT is not installed; install it with: "
                "pip install 'netcut[tflite]' (ai-edge-litert)",
                package="ai-edge-litert",
            )
        )
    return infos


def runtime_info(name: str, infos: list[RuntimeInfo] | None = None) -> RuntimeInfo:
    """The runtime `name`, from `infos` (what a benchmark worker found) or found here."""
    if name not in RUNTIMES:
        raise InvalidArgument(f"unknown runtime {name!r}; choose one of: {', '.join(RUNTIMES)}")
    info = next(i for i in (infos if infos is not None else discover()) if i.name == name)
    if not info.available:
        raise FailedPrecondition(f"runtime {name!r} is not available on this board: {info.unavailable_reason}")
    return info
