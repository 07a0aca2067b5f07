"""onnxruntime's execution provider names as they travel: the short names people type ("cuda",
"tensorrt", "cpu") and onnxruntime's own ("CUDAExecutionProvider"). One definition for the host, which
keys tables by them, and the agent, which opens sessions with them. Light: no onnxruntime here."""

from __future__ import annotations

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
SUFFIX = "ExecutionProvider"
ALIASES = {"trt": TENSORRT, "tensorrt": TENSORRT, "cuda": CUDA, "cpu": CPU}
# Providers whose tensors live in CUDA memory: IOBinding binds inputs and outputs there.
ON_CUDA = (CUDA, TENSORRT)


def canonical(name: str, known: list[str] | tuple[str, ...] = ()) -> str:
    """onnxruntime's name for `name`: an alias, a case-insensitive match among `known` (with or without
    the 'ExecutionProvider' suffix), or `name` itself where nothing matches (the caller refuses it)."""
    text = name.strip()
    if text.lower() in ALIASES:
        return ALIASES[text.lower()]
    for candidate in (*known, *ALIASES.values()):
        if text.lower() in (candidate.lower(), candidate.lower().removesuffix(SUFFIX.lower())):
            return candidate
    return text


def short(name: str) -> str:
    """'cuda' for CUDAExecutionProvider: how reports and messages name a provider."""
    return name.removesuffix(SUFFIX).lower() or name
