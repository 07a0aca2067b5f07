"""The per-kernel estimator on a target: its training data from the tables, its fit, its estimates.

Training data: every layers-mode row (a network's profile, or a kernel-suite model's) gives one time per
fused kernel (netcut.kernels); the kernels come from the very ONNX graph that was measured, exported
again (deterministically) by `ModelFiles`. Whole models measured end to end fit the network-level
correction. The fit is stored as JSON beside the rows it was fitted on, like the cost model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx

from netcut.cuts import NetworkAnalysis, candidate_cuts
from netcut.errors import NetcutError
from netcut.estimate import STAT_OF, Estimate, quantile_level
from netcut.kernel_suite import KERNEL_BLOCK, build, spec_of
from netcut.kernels import (
    ACT_SUFFIX,
    CHANNEL_BLOCKS,
    GUESS_SHARE,
    MIN_KERNELS,
    SHRINK_MIN_NETWORKS,
    SMALL_QUANTILE,
    SKIPPED,
    VERSION,
    WARM_SHARE,
    Kernel,
    KernelModel,
    fit_kernel_model,
    footprint,
    head_kernels,
    kernel_times,
    kernels_of,
    network_quantiles,
    network_spreads,
    one_network_more,
    parse_spec,
    per_node_overhead,
    reorder_kernel,
    small_variance,
    warmth,
    with_correction,
)
from netcut.vocabulary import parse_cut_label

from .estimation import KERNELS
from .profiling import Job, ModelFiles, analyses_for
from .tables import LatencyDB, RowKey

log = logging.getLogger(__name__)
ESTIMATOR = KERNELS  # its models' key in the cost_models table
MEASURED_WHOLE = ("layers", "e2e", "anchor")


class SuiteFiles(ModelFiles):
    """ModelFiles that also builds kernel-suite models (no torch: plain ONNX graphs)."""

    def get(self, job: Job) -> Path:
        spec = spec_of(job.model)
        if spec is None:
            return super().get(job)
        if self.key.format != "onnx":
            raise NetcutError("the kernel suite runs ONNX models; calibrate an onnxruntime target")
        path = self.path(job).with_name(f"kernel-{hashlib.sha256(spec.encode()).hexdigest()[:16]}.onnx")
        if not path.is_file():
            tmp = path.with_suffix(".part")
            onnx.save(build(spec), tmp)
            tmp.replace(path)
        return path


class KernelSource:
    """The kernels of the networks and suite models of one row key, each graph read once. They are read
    from the ONNX form of the network whatever the target runs (a LiteRT target's kernels too), in the
    export cache the profiles use (the very file a layers-mode profile of an ONNX target measured)."""

    def __init__(self, cache: Path, key: RowKey, analyses: dict[str, NetworkAnalysis]):
        self.key, self.analyses = key, analyses
        self.files = ModelFiles(Path(cache), RowKey(**{**vars(key), "format": "onnx"}), analyses)
        self._cache: dict[str, list[Kernel]] = {}

    def analysis(self, name: str) -> NetworkAnalysis:
        """A network's analysis, made when first asked for (the table's other networks train the model too)."""
        if name not in self.analyses:
            self.analyses.update(analyses_for([name], self.key))
        return self.analyses[name]

    def of(self, name: str) -> list[Kernel]:
        if name not in self._cache:
            spec = spec_of(name)
            if spec is None:
                self.analysis(name)
            graph = build(spec) if spec is not None else onnx.load(self.files.get(Job(name, None, "layers")))
            self._cache[name] = kernels_of(graph, self.key.precision)
        return self._cache[name]

    def trn(self, a: NetworkAnalysis, cut: str | None, classes: int) -> list[Kernel]:
        """A candidate's kernels: the full network's up to the cut's block, then the head."""
        kernels = self.of(a.model_name)
        if cut is None:
            return kernels
        labels = [c.name for c in a.cuts]
        keep = set(labels[: labels.index(cut) + 1])
        shape = a.cut(cut).output_shape
        spatial = int(np.prod(shape[2:])) if len(shape) > 2 else 1
        kept = [k for k in kernels if k.block in keep]
        return kept + head_kernels(shape[1], spatial, classes, self.key.precision, kept[-1] if kept else None)


class TrainingData(NamedTuple):
    samples: list[tuple[Kernel, float, float]]  # (kernel, ms, footprint of the model run it was measured in)
    wholes: list[tuple[list[Kernel], float]]  # whole models: (kernels, median ms)
    tails: dict[str, float]  # p90.. over the median
    networks: list[str]
    suite: int  # kernels from the kernel suite
    cache_bytes: float  # the board's L2, as its agent reported it with the profiles (0: not said)
    alone: tuple[bool, ...] = ()  # per sample: measured in a kernel-suite model, not inside a network


def training_data(
    db: LatencyDB, identity: str, key: RowKey, source: KernelSource, exclude: str | list | None = None
) -> TrainingData:
    """The per-kernel model's data from the target's rows, less the networks in `exclude`."""
    samples, wholes, ratios, networks, suite = [], [], {"p90": [], "p95": [], "p99": []}, [], 0
    alone: list[bool] = []
    caches: list[int] = []
    names = [*db.archs(identity, key), *db.archs(identity, key, suite=True)]
    left_out = {exclude} if isinstance(exclude, str) or exclude is None else set(exclude)
    found = [(name, _rows_of(db, identity, key, source, name)) for name in names if name not in left_out]
    # Each row with its per-node times, read once (a layers-mode row's; None for the others).
    found = [
        (name, kernels, [(r, json.loads(r["layers"] or "[]") if r["mode"] == "layers" else None) for r in rows])
        for name, (kernels, rows) in ((n, f) for n, f in found if f is not None)
    ]
    overhead = per_node_overhead(
        [
            (len(layers), sum(float(e[4]) for e in layers), r["median_ms"])
            for _, _, rows in found
            for r, layers in rows
            if layers and all(len(e) >= 5 for e in layers)
        ]
    )
    for name, kernels, rows in found:
        is_suite = spec_of(name) is not None
        skip = isolation_reorders(name)
        for r, layers in rows:
            if r["median_ms"] > 0:
                for q in ratios:
                    ratios[q].append(r[f"{q}_ms"] / r["median_ms"])
            if r["mode"] == "layers":
                # A suite model's times as a network's: normalised to its whole run, the profiler's per-node
                # cost taken off first (kernel_times): its raw times' sum exceeded the unprofiled median for
                # 95% of 60 suite models at 224 px, by up to 2.9x on the smallest.
                times = kernel_times(kernels, layers, overhead, skip)
                run = footprint(kernels)
                samples += [
                    (k, times.get(k.name, 0.0), run)
                    for k in kernels
                    if times.get(k.name, 0) > 0 or k.kind.startswith("act.")  # an activation fused: zero
                ]
                if times.get(SKIPPED, 0) > 0:  # the suite's output reorder: what a TRN's head pays (REORDER)
                    samples.append((reorder_kernel(name, output_bytes(name), KERNEL_BLOCK), times[SKIPPED], run))
                alone += [is_suite] * (len(samples) - len(alone))
                caches += [c for c in [_l2_of(r)] if c > 0]
                suite += sum(1 for k in kernels if is_suite and k.block == KERNEL_BLOCK and times.get(k.name, 0) > 0)
                wholes.append((kernels, r["median_ms"]))
            elif not is_suite:
                cut = parse_cut_label(r["cut"])
                a = source.analysis(name)
                if cut is None or cut in [c.name for c in a.cuts]:
                    wholes.append((source.trn(a, cut, key.classes), r["median_ms"]))
        if not is_suite:
            networks.append(name)
    tails = {q: float(np.median(v)) for q, v in ratios.items() if v}
    cache = float(np.median(caches)) if caches and not _off_cpu(db, identity) else 0.0
    return TrainingData(samples, wholes, tails, networks, suite, cache, tuple(alone))


def _whole_error(model: KernelModel, wholes: list[tuple[list[Kernel], float]]) -> float:
    """The model's median relative error on the whole models it was fitted on."""
    errors = [abs(model.estimate(ks).ms / ms - 1) for ks, ms in wholes if ms > 0]
    return float(np.median(errors)) if errors else 0.0


def _off_cpu(db: LatencyDB, identity: str) -> bool:
    """Whether the target runs its models on another device than the CPU (an execution provider other than the
    CPU's): the CPU's cache is then not where the kernels run."""
    for row in db.targets():
        if row["identity"] == identity:
            chosen = json.loads(row["description"] or "{}").get("execution_providers") or []
            return any(p.get("name") != "CPUExecutionProvider" for p in chosen)
    return False


def _l2_of(row) -> int:  # noqa: ANN001 - a measurements row
    """The L2 size the agent reported with a row (0 for an agent that does not, or a board whose sysfs does not
    say: its model then has no warmth)."""
    try:
        return int(json.loads(row["board"] or "{}").get("board", {}).get("l2_cache_bytes", 0) or 0)
    except (ValueError, TypeError, AttributeError):
        return 0


def output_bytes(name: str) -> float:
    """A suite convolution's output, in bytes (float32; padded to keep the size at stride 1)."""
    spec = parse_spec(spec_of(name) or "")
    return 4.0 * spec["cout"] * -(-spec["h"] // spec["s"]) * -(-spec["w"] // spec["s"])


def isolation_reorders(name: str) -> tuple[str, ...]:
    """Runtime nodes a suite model charges to its kernel that the same kernel in a network does not run (none
    for a network's own rows): a
    convolution whose activation fuses into it (none, ReLU, ReLU6) feeds another NCHWc convolution in a
    network, but a suite model's graph output, so onnxruntime reorders its output back to NCHW (at 224 px,
    mobilenet_v2's 56x56x144 depthwise: 0.17 ms of convolution, 0.13 ms of reorder). A SiLU or hard-swish
    convolution keeps its reorder: in a network too its activation runs apart, on NCHW. The reorders left out
    are not lost: they are the samples of what a TRN's head pays for its own (netcut.kernels.REORDER)."""
    text = spec_of(name)
    spec = parse_spec(text) if text is not None else {}
    return ("ReorderOutput",) if spec.get("op") == "conv" and spec.get("act", "") in ("", "relu", "relu6") else ()


def _rows_of(
    db: LatencyDB, identity: str, key: RowKey, source: KernelSource, name: str
) -> tuple[list[Kernel], list] | None:
    """A network's (or suite model's) kernels and its rows that time something whole; None without either."""
    rows = [r for r in db.rows(identity=identity, arch=name, key=key) if r["mode"] in MEASURED_WHOLE]
    if not rows:
        return None
    try:
        return source.of(name), rows
    except Exception as exc:  # noqa: BLE001 - a network this host cannot build (a custom one): left out
        log.info("no kernels for %s: %s", name, exc)
        return None


def whole_models(
    db: LatencyDB, identity: str, key: RowKey, source: KernelSource, name: str
) -> list[tuple[list[Kernel], float]]:
    """A network's whole models measured on the target: (its kernels, median ms) for the full network of a
    layers profile and each TRN measured end to end."""
    found = _rows_of(db, identity, key, source, name)
    if found is None:
        return []
    kernels, rows = found
    a, out = source.analysis(name), []
    for r in rows:
        cut = parse_cut_label(r["cut"])
        if r["median_ms"] <= 0 or (cut is not None and cut not in [c.name for c in a.cuts]):
            continue
        out.append((kernels if r["mode"] == "layers" else source.trn(a, cut, key.classes), r["median_ms"]))
    return out


def with_spreads(
    model: KernelModel, db: LatencyDB, identity: str, key: RowKey, source: KernelSource, exclude: str | list | None
) -> KernelModel:
    """The model's interval from networks left out: each network it was fitted on is left out in turn, the
    model fitted again without it, and that network's whole models estimated (netcut.kernels.network_spreads).
    From SHRINK_MIN_NETWORKS networks, each pair is left out too, for how much one network more shrinks the
    error (netcut.kernels.one_network_more). A fit per network and per pair: at 224 px with seven networks,
    28 fits in about 20 s, once per change of the rows (the result is stored)."""
    base = [] if exclude is None else [exclude] if isinstance(exclude, str) else list(exclude)
    wholes = {name: whole_models(db, identity, key, source, name) for name in model.networks}

    small: dict[str, list[float]] = {}  # each left-out network's models' small share (KernelModel.small)

    def errors(left_out: list[str]) -> list[tuple[list[float], int]]:
        """Each left-out network's log ratios from a fit without them, and its count of whole models."""
        try:
            without = fit_from(training_data(db, identity, key, source, exclude=base + left_out), identity,
                               model.channel_block)  # fmt: skip
        except NetcutError as exc:  # too few kernels without them
            log.info("no interval from leaving %s out: %s", ", ".join(left_out), exc)
            return []
        out = []
        for name in left_out:
            estimated = [(without.estimate(ks), ms) for ks, ms in wholes[name]]
            # Not the estimates that rest on kernels beyond every fit (said as guesses wherever they are made):
            # one such network would set every other network's interval. Their count stays, for the weights.
            kept = [(e, ms) for e, ms in estimated if not e.guessed]
            out.append(([math.log(ms / max(e.ms, 1e-12)) for e, ms in kept], len(estimated)))
            if len(left_out) == 1:
                small[name] = [e.small for e, _ in kept]
        return out

    one_out = {name: found[0] for name in model.networks if (found := errors([name]))}
    totals = {name: total for name, (_, total) in one_out.items()}
    raw = {name: ratios for name, (ratios, _) in one_out.items()}
    model.small_gain, model.small_mean = small_variance(raw, small, totals)
    model.small_max = max((x for v in small.values() for x in v), default=0.0)
    # The errors as they would be at the mean small share: the interval's quantiles are of those, and each
    # estimate's interval is widened back by its own share (KernelModel.widening).
    log_ratios = {name: [x / model.widening(s) for x, s in zip(v, small[name])] for name, v in raw.items()}
    model.unseen_log_sd = network_spreads(log_ratios)[0]
    model.within_log_sd = network_spreads(raw)[1]  # a corrected estimate's: not widened
    model.unseen_log_q = network_quantiles(log_ratios, totals=totals)
    model.spread_networks = sum(1 for v in log_ratios.values() if v)
    if model.spread_networks >= SHRINK_MIN_NETWORKS:
        pairs = [[a, b] for i, a in enumerate(model.networks) for b in model.networks[i + 1 :]]
        log.info("per-kernel model's interval: %d networks and %d pairs of them left out", len(wholes), len(pairs))
        two_out = [found for pair in pairs for found in errors(pair)]
        model.unseen_shrink = one_network_more(list(one_out.values()), two_out)
        model.unseen_log_sd *= model.unseen_shrink
        model.unseen_log_q = tuple(model.unseen_shrink * q for q in model.unseen_log_q)
    return model


def fit(
    db: LatencyDB, identity: str, key: RowKey, source: KernelSource, exclude: str | list | None = None
) -> KernelModel:
    """The target's kernel model (read back while its rows are unchanged; `exclude`: leave networks out,
    not stored)."""
    fitted_rows = db.fitted_rows(identity, key)
    if exclude is None:
        stored = db.cost_model(identity, key, fitted_rows, ESTIMATOR)
        if stored is not None:
            try:
                model = KernelModel.from_json(stored)
                if model.version == VERSION:
                    return model
                log.info("stored kernel model not used: written by another version (%d)", model.version)
            except NetcutError as exc:  # written by another version: fitted again
                log.info("stored kernel model not used: %s", exc)
    model = with_spreads(
        fit_from(training_data(db, identity, key, source, exclude), identity), db, identity, key, source, exclude
    )
    if exclude is None:
        db.save_cost_model(identity, key, model.to_json(), fitted_rows, ESTIMATOR)
    return model


def fit_from(data: TrainingData, identity: str, block: int | None = None) -> KernelModel:
    """The kernel model of training_data's answer (not stored): each kernel's time as if run cold (divided by
    its model run's warmth), where the board said its L2's size. `block`: the channel block its runtime
    computes convolutions in (netcut.kernels.Kernel.macs_at); None: of CHANNEL_BLOCKS, each that changes some
    kernel's MACs, the one whose model prices the measured whole models best (the smaller on a tie). On this
    project's x86 machine (AVX-512) 16, on all four tables: whole models' in-sample median error 5.4-6.1% at 1,
    3.8-5.4% at 16; mnasnet1_0's middle cuts had come out 12-31% high."""
    share = WARM_SHARE if data.cache_bytes > 0 else 0.0
    cold = [(k, ms / warmth(run, data.cache_bytes, share)) for k, ms, run in data.samples]
    if block is None:
        fits: list[KernelModel] = []
        for b in CHANNEL_BLOCKS:
            if not fits or any(k.macs_at(b) != k.macs_at(fits[-1].channel_block) for k, _ in cold):
                fits.append(fit_from(data, identity, b))
        return min(fits, key=lambda m: (_whole_error(m, data.wholes), m.channel_block))
    model = fit_kernel_model(cold, identity, data.networks, data.suite, block)
    model.cache_bytes, model.warm_share = data.cache_bytes, share
    model.small_ms = small_prices(model, [s for s, alone in zip(cold, data.alone) if not alone])
    return with_correction(model, data.wholes, data.tails)


def small_prices(model: KernelModel, samples: list[tuple[Kernel, float]]) -> dict[str, float]:
    """Per fitted kind, SMALL_QUANTILE of the times of the kernels it prices that were measured in networks
    (`samples`, cold), where it prices MIN_KERNELS or more of them (KernelModel.small)."""
    times: dict[str, list[float]] = {}
    for k, ms in samples:
        if ms > 0 and model.runs(k):
            times.setdefault(model.kind_for(k), []).append(ms)
    return {kind: float(np.quantile(v, SMALL_QUANTILE)) for kind, v in sorted(times.items()) if len(v) >= MIN_KERNELS}


def tail_ratio(model: KernelModel, quantile: str) -> float:
    """The quantile over the median on this target (the model predicts medians)."""
    return model.quantile_ratios.get(STAT_OF[quantile_level(quantile)].removesuffix("_ms"), 1.0)


def stored(db: LatencyDB, identity: str, key: RowKey) -> KernelModel | None:
    text = db.cost_model(identity, key, None, ESTIMATOR)
    return KernelModel.from_json(text) if text else None


def network_ratio(
    db: LatencyDB, identity: str, key: RowKey, model: KernelModel, source: KernelSource, a: NetworkAnalysis
) -> float | None:
    """Where TRNs of this network were measured on the target: the median measured/estimated over them;
    None where none was."""
    ratios = []
    for r in db.rows(identity=identity, arch=a.model_name, key=key):
        if r["mode"] in ("e2e", "anchor") and r["median_ms"] > 0:
            cut = parse_cut_label(r["cut"])
            if cut is None or cut in [c.name for c in a.cuts]:
                ratios.append(r["median_ms"] / model.estimate(source.trn(a, cut, key.classes)).ms)
    return float(np.median(ratios)) if ratios else None


def estimates(
    model: KernelModel,
    a: NetworkAnalysis,
    key: RowKey,
    source: KernelSource,
    quantile: str,
    only: list[str | None] | None = None,
    ratio: float | None = None,
) -> list[Estimate]:
    """Each candidate's estimate; `ratio`: the network's own measured TRNs' correction (network_ratio)."""
    tail = tail_ratio(model, quantile)
    corrected, ratio = ratio is not None, 1.0 if ratio is None else ratio
    out = []
    for cut in only if only is not None else candidate_cuts(a):
        kernels = source.trn(a, cut, key.classes)
        e = model.estimate(kernels, corrected)
        value = e.ms * ratio * tail
        above = (e.high_ms - e.ms) * ratio * tail  # the margin a deadline needs: the interval's upper side
        behind = "; ".join(e.dominant())
        origin = (
            f"rescaled from {model.reference} with {model.measurements_used} measurements"
            if model.reference
            else f"fitted on {model.kernels} kernels ({model.suite} from the suite) of {len(model.networks)} networks"
        )
        correction = f", corrected x{ratio:.3f} by this network's measured TRNs" if corrected else ""
        if model.warm_share > 0:  # what the board's cache is worth to a run of this size
            correction += (
                f"; its weights and activations ({footprint(kernels) / 1e6:.1f} MB) against the board's "
                f"{model.cache_bytes / 1e6:.1f} MB L2: kernels x{model.warmth(kernels):.2f}"
            )
        if e.guessed:  # say which kernels, and how to measure such ones
            kinds = ", ".join(f"{kind} x{n}" for kind, (n, _) in sorted(e.beyond.items(), key=lambda kv: -kv[1][1]))
            # The suite builds convolutions, products, pooling and element-wise kernels; other kinds (a channel
            # shuffle's transpose, concatenation) are measured inside a network's layers-mode profile.
            spec = {k.name: k.spec for k in kernels}  # an activation kernel is built with its convolution
            buildable = all(spec.get(k.name.removesuffix(ACT_SUFFIX)) for k in kernels if k.kind in e.beyond)
            how = (
                f"netcut-host calibrate --models {a.model_name} measures such kernels"
                if buildable
                else f"a layers-mode profile of a network with such kernels measures them (the kernel suite cannot "
                f"build them): netcut-host profile --models {a.model_name} --mode layers"
            )
            correction += (
                f"; {e.beyond_ms / e.ms:.0%} of it from kernels of a kind never measured here or larger than any of it "
                f"({kinds}): a guess until {how}"
            )
        if e.unlike:  # the networks' spread was learned on larger kernels than these
            correction += (
                f"; {e.small:.0%} of it from kernels smaller than those of the networks measured here (more than in "
                f"any network its interval was learned from): the interval is the wider of theirs and the kinds' own"
            )
        elif e.small > GUESS_SHARE and model.small_gain > 0:
            widen = model.widening(e.small)
            correction += f"; {e.small:.0%} of it from kernels smaller than the networks': interval x{widen:.2f}"
        out.append(
            Estimate(
                cut,
                value,
                above,
                f"per-kernel model {origin}{correction}; 90% interval {e.low_ms * ratio * tail:.3f}-"
                f"{e.high_ms * ratio * tail:.3f} ms; dominated by {behind}",
            )
        )
    return out
