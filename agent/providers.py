"""Execution providers as data: an ordered list of onnxruntime providers with their options, checked
against what the board has before a session opens and against what the session really did after.

onnxruntime falls back in silence: a CUDA provider that fails to start (a missing cuDNN) leaves a CPU
session behind a warning, nodes no listed provider takes run on the CPU, and InferenceSession.run
re-creates the session on the CPU after a provider failure. Each would time the CPU under a GPU's
name. Here fall-back is off, and what ran is read back and compared with what was asked for. Light
(no onnxruntime): the server checks requests with it before they are queued.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
from dataclasses import dataclass, field
from pathlib import Path

from netcut_protos.providers import CPU, ON_CUDA, TENSORRT, canonical, short

from .errors import FailedPrecondition, InvalidArgument

# A first TensorRT engine build takes minutes on a Jetson: a request that may build one gets this much more
# time than the agent's default limit, and the result says so.
TENSORRT_BUILD_ALLOWANCE_S = 1800.0
MAX_PROVIDERS = 8
MAX_OPTIONS = 64
_OPTION_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$")


@dataclass
class ProviderRequest:
    name: str
    options: dict[str, str] = field(default_factory=dict)


def requested(providers: list[ProviderRequest], single: str = "") -> list[ProviderRequest]:
    """The request's provider list: `providers`, else the one legacy `execution_provider`, else the CPU."""
    if providers:
        return providers
    return [ProviderRequest(single or CPU)]


def resolve(providers: list[ProviderRequest], available: list[str]) -> list[ProviderRequest]:
    """The list with onnxruntime's names, refused if malformed or if the board lacks a provider."""
    if len(providers) > MAX_PROVIDERS:
        raise InvalidArgument(f"{len(providers)} execution providers asked for; at most {MAX_PROVIDERS}")
    out, seen = [], set()
    for p in providers:
        if not p.name.strip():
            raise InvalidArgument("an execution provider without a name; give e.g. 'cuda' or 'CPUExecutionProvider'")
        name = canonical(p.name, available)
        if name in seen:
            raise InvalidArgument(f"execution provider {short(name)} is listed twice")
        seen.add(name)
        if len(p.options) > MAX_OPTIONS:
            raise InvalidArgument(f"{len(p.options)} options for {short(name)}; at most {MAX_OPTIONS}")
        for key, value in p.options.items():
            if not _OPTION_KEY.match(key) or len(value) > 1024 or "\x00" in value:
                raise InvalidArgument(
                    f"provider option {key!r} of {short(name)} is not a plain name=value option "
                    "(letters, digits, '_' and '.', a value under 1 KiB)"
                )
        out.append(ProviderRequest(name, dict(p.options)))
    missing = [p.name for p in out if p.name not in available]
    if missing:
        hint = (
            "; a GPU provider needs onnxruntime-gpu (pip install 'netcut[agent-gpu]') or NVIDIA's wheel on a Jetson"
            if any(m in ON_CUDA for m in missing)
            else ""
        )
        raise FailedPrecondition(
            f"execution provider {', '.join(missing)} is not available on this board "
            f"(it has: {', '.join(available) or 'none'}){hint}"
        )
    return out


def fallback_disabled(providers: list[ProviderRequest]) -> bool:
    """Whether to forbid onnxruntime's CPU fall-back: whenever the CPU is not one of the providers asked for."""
    return all(p.name != CPU for p in providers)


def device_of(providers: list[ProviderRequest]) -> tuple[str, int]:
    """Where IOBinding keeps the inputs and outputs: the first provider's device ('cuda', id) or ('cpu', 0)."""
    first = providers[0]
    if first.name in ON_CUDA:
        try:
            return "cuda", int(first.options.get("device_id", "0"))
        except ValueError:
            raise InvalidArgument(f"device_id={first.options['device_id']!r} is not a whole number") from None
    return "cpu", 0


def verify(asked: list[ProviderRequest], session_providers: list[str], placement: dict[str, int]) -> None:
    """Refuse a session that is not what was asked for: a provider missing from it (it failed to start), or
    kernels on a provider nobody listed (onnxruntime's implicit CPU)."""
    names = [p.name for p in asked]
    missing = [n for n in names if n not in session_providers]
    if missing:
        raise FailedPrecondition(
            f"onnxruntime did not start {', '.join(missing)} (the session has {', '.join(session_providers)}): "
            "its libraries are missing or do not match (CUDA, cuDNN, TensorRT versions); see the agent's log. "
            "Nothing was timed, rather than time the CPU under that name"
        )
    strays = {p: n for p, n in placement.items() if p not in names and n}
    if strays:
        where = ", ".join(f"{n} on {short(p)}" for p, n in sorted(strays.items()))
        raise FailedPrecondition(
            f"kernels ran on a provider not asked for ({where}): add it to the list (e.g. '...,cpu') to time "
            "the model as it would run, or give a model every listed provider runs whole"
        )


def layer_profile_note(placement: dict[str, int]) -> str:
    """Why onnxruntime's per-node times are not per-layer device times under these providers, or ''."""
    if placement.get(TENSORRT):
        return (
            "per-layer profile unavailable under TensorRT: it runs its part of the graph as one fused engine, "
            "so onnxruntime sees one kernel"
        )
    if any(n for p, n in placement.items() if p != CPU):
        gpu = ", ".join(short(p) for p, n in placement.items() if p != CPU and n)
        return (
            f"per-layer profile unavailable under {gpu}: onnxruntime's node times there are host-side times "
            "around asynchronous launches, not the kernels' device times"
        )
    return ""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:60] or "unknown"


def tensorrt_version() -> str:
    for dist in ("tensorrt", "tensorrt-libs", "tensorrt_libs"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def with_tensorrt_caches(
    providers: list[ProviderRequest], cache_root: Path, model_id: str, gpu: str, trt_version: str | None = None
) -> tuple[list[ProviderRequest], Path | None]:
    """TensorRT's engine and timing caches under the agent's store, keyed by model, TensorRT version and
    GPU (an engine is valid for exactly those), unless the request set them itself; with the engine
    directory (None without TensorRT)."""
    trt = next((p for p in providers if p.name == TENSORRT), None)
    if trt is None:
        return providers, None
    version = trt_version or tensorrt_version()
    key = hashlib.sha256(f"{model_id}|{version}|{gpu}".encode()).hexdigest()[:16]
    engines = cache_root / "engines" / f"{model_id[:16]}-{_slug(version)}-{_slug(gpu)}-{key}"
    timing = cache_root / "timing" / f"{_slug(version)}-{_slug(gpu)}"
    options = {
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": str(engines),
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": str(timing),
        **trt.options,
    }
    out = [ProviderRequest(p.name, options if p is trt else dict(p.options)) for p in providers]
    return out, Path(options["trt_engine_cache_path"])


def engine_cached(engine_dir: Path | None) -> bool:
    try:
        return engine_dir is not None and any(engine_dir.iterdir())
    except OSError:
        return False


def build_allowance(asked: list[ProviderRequest], cache_root: Path, model_id: str, gpu: str) -> float:
    """Extra seconds a request gets beyond the agent's default limit: a TensorRT engine for this model, this
    TensorRT and this GPU is not in the cache yet, so the session will build one."""
    names = [ProviderRequest(canonical(p.name), p.options) for p in asked]
    _, engines = with_tensorrt_caches(names, cache_root, model_id, gpu)
    return TENSORRT_BUILD_ALLOWANCE_S if engines is not None and not engine_cached(engines) else 0.0
