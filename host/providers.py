"""A target's onnxruntime execution providers: read from `--ep tensorrt,cuda,cpu` and `--ep-option
[PROVIDER:]KEY=VALUE` (or the inventory's `providers` and `provider_options`), checked against what the
agent says it has, and part of the target's identity (a GPU's rows are never mixed with the CPU's)."""

from __future__ import annotations

from netcut_protos.providers import CPU, canonical, short

__all__ = ["parse", "resolve", "is_default", "gives_layer_profile", "words", "short"]

from .errors import ConfigError
from .records import AgentInfo, Provider


def parse(names: list[str], options: list[str]) -> tuple[Provider, ...]:
    """Providers in order, each with its options. An option without 'PROVIDER:' goes to the first provider."""
    names = [n.strip() for n in names if n.strip()]
    if options and not names:
        raise ConfigError("--ep-option needs --ep (the providers the options are for), e.g. --ep tensorrt,cuda,cpu")
    if len({canonical(n) for n in names}) != len(names):
        raise ConfigError(f"--ep {','.join(names)} names a provider twice")
    given: dict[str, dict[str, str]] = {canonical(n): {} for n in names}
    for text in options:
        head, sep, value = text.partition("=")
        where, _, key = head.rpartition(":")
        if not sep or not key.strip():
            raise ConfigError(f"--ep-option {text!r}: write KEY=VALUE or PROVIDER:KEY=VALUE, e.g. trt_fp16_enable=1")
        provider = canonical(where) if where else canonical(names[0])
        if provider not in given:
            raise ConfigError(f"--ep-option {text!r} is for {short(provider)}, which --ep does not list")
        given[provider][key.strip()] = value.strip()
    return tuple(Provider(name, tuple(sorted(opts.items()))) for name, opts in given.items())


def resolve(providers: tuple[Provider, ...], info: AgentInfo, runtime: str) -> tuple[Provider, ...]:
    """onnxruntime's names for the providers, refused where the agent's runtime does not have them."""
    if not providers:
        return ()
    if runtime != "onnxruntime":
        raise ConfigError(f"execution providers are onnxruntime's; {runtime} runs on the CPU (leave out --ep)")
    rt = info.runtime(runtime)
    available = list(rt.execution_providers) if rt else []
    out = tuple(Provider(canonical(p.name, available), p.options) for p in providers)
    missing = [p.name for p in out if p.name not in available]
    if missing:
        raise ConfigError(
            f"the target's agent has no {', '.join(missing)} (it has: {', '.join(available) or 'none'}); install "
            "onnxruntime-gpu on the board (pip install 'netcut[agent-gpu]', or NVIDIA's wheel on a Jetson)"
        )
    if info.protocol_version < 2 and not is_default(out):
        raise ConfigError(
            f"the target's agent speaks protocol {info.protocol_version}, which has no execution provider lists; "
            "upgrade it (netcut-host fleet provision)"
        )
    return out


def is_default(providers: tuple[Provider, ...]) -> bool:
    """The CPU alone, as every table before provider lists was measured."""
    return not providers or providers == (Provider(CPU),)


def gives_layer_profile(providers: tuple[Provider, ...]) -> bool:
    """Whether onnxruntime's per-node times are device times: on the CPU only (CUDA's are host-side launch
    times, TensorRT runs one fused engine)."""
    return all(p.name == CPU for p in providers)


def words(providers: tuple[Provider, ...]) -> str:
    return ",".join(short(p.name) for p in providers) or "cpu"
