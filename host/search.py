"""netcut-host search: estimate, choose, retrain, confirm on the board, report.

Everything is saved as it happens under --out (state.json after every step, a checkpoint
per trained candidate), so a search killed midway continues with --resume, and a target
that dies stops the search with all measurements and training kept.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from netcut import __version__, models, reparam
from netcut.cuts import NetworkAnalysis, analyse, candidate_cuts, check_input_size
from netcut.data import BUILTIN_NORMALIZATION, IMAGENET, TEST_FRACTION, TaskData, load_task
from netcut.errors import NetcutError
from netcut.estimate import STAT_OF, quantile_level
from netcut.export import export
from netcut.policy import (
    Candidate,
    Policy,
    choose,
    default_policy,
    mark_feasible,
    next_shallower,
    ranked_for_confirmation,
)
from netcut.training import TrainConfig, TrainResult, evaluate, train_full, train_heads
from netcut.trn import build_trn
from netcut.quantize import QuantizationError, calibration_images, check_calibration, runtime_accuracy
from netcut.half import HalfError
from netcut.vocabulary import DEFAULT_CALIBRATION_IMAGES, FP16, FP32, INT8, cut_label

from netcut_protos.providers import ON_CUDA

from . import wire
from .choices import DEFAULT_ROUNDS, FORMAT_OF
from .errors import ConfigError, NoFeasibleCandidate, TargetError
from .estimation import estimate_candidates
from .profiling import SEED, Job, ModelFiles, mode_for, plan, run, store_result
from .records import AgentResult, Timing
from .tables import LatencyDB, RowKey
from .targets import ConnectedTarget, state_changed

log = logging.getLogger(__name__)

STATE = "state.json"
# Post-training quantization does not add accuracy: an int8 candidate whose float twin is this far below the
# best accuracy found cannot win, and is not quantized (measured: within 2 of 359 images either way).
QUANT_SLACK = 0.01


class OutputInUse(ConfigError):
    """The output folder holds another search (or this one, not asked to resume)."""

    def __init__(self, message: str, resumable: bool):
        super().__init__(message)
        self.resumable = resumable


class ClassesMismatch(ConfigError):
    """The data has another number of classes than the one asked for."""


@dataclass(frozen=True)
class SearchConfig:
    """What the user asked for. Built by keyword; values resolved during the search (the demo's deadline)
    are returned in the outcome, never written back here."""

    deadline_ms: float | None = None  # None: the built-in demo's rule (see resolve_deadline)
    quantile: str = "p99"
    models: tuple[str, ...] = ()
    weights: str = "builtin"
    data: str = "builtin"
    estimator: str = "empirical"
    policy: Policy | None = None  # None: the default for the fine-tuning mode (netcut.policy.DEFAULT_POLICY)
    finetune: str = "head"
    epochs: int = 30
    device: str = "cpu"
    input_size: int = 32
    margin_pct: float = 5.0
    out: Path = Path("netcut-out")
    timing: Timing = Timing()
    expected_classes: int | None = None  # checked against the data before any work
    rounds: int = DEFAULT_ROUNDS  # profiling: windows per measurement (netcut_host.profiling.run)
    remeasure: int = 1  # measurements the agent doubts (busy, noisy, throttled) are measured once more
    precisions: tuple[str, ...] = (FP32, INT8)  # each candidate network and cut in each precision
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES  # int8: training images that calibrate

    def __post_init__(self):
        if self.policy is None:
            object.__setattr__(self, "policy", default_policy(self.finetune))

    def identity(self) -> dict:
        """What must match for --resume to continue a search."""
        keep = (
            "deadline_ms",
            "quantile",
            "weights",
            "data",
            "estimator",
            "finetune",
            "epochs",
            "input_size",
            "margin_pct",
        )
        return {
            **{k: getattr(self, k) for k in keep},
            "models": list(self.models),
            "policy": str(self.policy),
            **({"precisions": list(self.precisions)} if self.precisions != (FP32,) else {}),
            **({"calibration_images": self.calibration_images} if INT8 in self.precisions else {}),
        }


@dataclass(frozen=True)
class Deadline:
    """The deadline a search ran against, and where it came from: given, resumed (the deadline an
    interrupted demo had chosen) or demo (the median of the off-the-shelf networks' estimates)."""

    ms: float
    source: str


# The demo's deadline over the median off-the-shelf network's median latency: room for a quiet machine's tail
# (p99 is 1.1-1.4x the median here), so the faster off-the-shelf networks meet it and the slower do not.
DEMO_TAIL = 1.25


def demo_deadline(medians_ms: list[float]) -> float:
    """The built-in demo's deadline: DEMO_TAIL times the (lower) median of the off-the-shelf networks'
    median latencies on this target, so that trimming has something to do (a slower network stays out).
    Medians, not the searched quantile: a p99 moves from run to run with whatever else the machine is
    doing, a median hardly does, so the demo's deadline is (nearly) the same every time on one machine."""
    full = sorted(m for m in medians_ms if m is not None)
    if not full:
        raise NetcutError("no off-the-shelf network could be estimated, so there is no demo deadline; give one")
    return round(DEMO_TAIL * full[(len(full) - 1) // 2], 4)  # the lower median: of two, the faster


@dataclass
class SearchOutcome:
    candidates: list[Candidate]
    pick: Candidate | None
    best_off_the_shelf: Candidate | None
    deadline: Deadline
    phases_s: dict
    artefact: Path | None
    sidecar: dict | None
    task: dict
    target: dict
    notes: list[str]


def best_off_the_shelf(candidates: list[Candidate]) -> Candidate | None:
    """The most accurate trained full network that meets the deadline."""
    off = [c for c in candidates if c.off_the_shelf and c.feasible and c.accuracy is not None]
    return max(off, key=lambda c: c.accuracy, default=None)


def default_precisions(target: ConnectedTarget) -> tuple[str, ...]:
    """What a search compares when not told: fp16 beside fp32 on a GPU (CUDA or TensorRT first), int8 beside
    fp32 elsewhere (what a Raspberry Pi ships)."""
    gpu = bool(target.providers) and target.providers[0].name in ON_CUDA
    return (FP32, FP16) if gpu else (FP32, INT8)


def normalization_for(weights: str, model: str | None = None) -> dict:
    """The mean and std images are normalised with: the built-in backbones' own; what timm's pretrained
    configuration gives for its networks; ImageNet's otherwise (torchvision's weights)."""
    if weights == "builtin":
        return BUILTIN_NORMALIZATION
    own = models.preprocessing(model) if model else {}
    return {"mean": own["mean"], "std": own["std"]} if "mean" in own else IMAGENET


class Search:
    def __init__(
        self,
        cfg: SearchConfig,
        target: ConnectedTarget,
        db: LatencyDB,
        export_cache: Path,
        say: Callable[[str], None] = lambda s: None,
        resume: bool = False,
        task: TaskData | None = None,
    ):
        self.cfg, self.target, self.db, self.say = cfg, target, db, say
        self._said: set[str] = set()
        self.task = task  # given: used instead of loading cfg.data (bench/search.py holds a test split out)
        self._tasks: dict[str, TaskData] = {}
        self._trainable: dict[str, NetworkAnalysis] = {}
        self._calibration: dict[int, tuple[list, list]] = {}  # id(task) -> (calibration, check) images
        self.deadline: Deadline | None = None
        self.phases = {"estimation": 0.0, "profiling": 0.0, "training": 0.0, "quantization": 0.0, "confirmation": 0.0}
        self.notes: list[str] = []
        self.out = Path(cfg.out)
        self.checkpoints = self.out / "checkpoints"
        self.export_cache = export_cache
        self.requested = json.loads(json.dumps(cfg.identity()))
        self._prepare_out(resume)
        self._floats: dict[str, dict] = dict(self.previous.get("trained_floats", {}))

    # ------------------------------------------------------------ state

    def _prepare_out(self, resume: bool) -> None:
        state = self.out / STATE
        self.previous: dict = {}
        if state.exists():
            self.previous = json.loads(state.read_text())
            if self.previous.get("config") != self.requested:
                raise OutputInUse(
                    f"{self.out} holds a search with other options; continuing it needs the same "
                    f"options (saved: {self.previous.get('config')})",
                    resumable=False,
                )
            if not resume and self.previous.get("pick"):
                self.say(
                    f"{self.out} holds this search, finished: reporting it again (its trained candidates are "
                    "reused, its deadline kept, and the pick measured on the target again)"
                )
            elif not resume:
                raise OutputInUse(
                    f"{self.out} holds this search, unfinished: continue it, or write this one elsewhere",
                    resumable=True,
                )
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def resolve_deadline(self) -> Deadline:
        """The one place the deadline is decided: the user's; else the one a resumed demo had chosen; else
        the demo's rule."""
        if self.cfg.deadline_ms is not None:
            return Deadline(self.cfg.deadline_ms, "given")
        if self.previous.get("deadline_ms"):
            return Deadline(self.previous["deadline_ms"], "resumed")
        medians = estimate_candidates(
            self.db, self.target.identity.key, self.key, self.analyses, self.cfg.estimator, "p50", 0.0, only=[None]
        )  # the first precision's (fp32 where searched): the demo's deadline does not move with int8
        deadline = Deadline(demo_deadline([medians.of(m, None).estimated_ms for m in self.analyses]), "demo")
        self.notes.append(
            f"no --deadline given: the demo uses {deadline.ms:g} ms, {DEMO_TAIL:g} times the median of the "
            "off-the-shelf networks' median latencies on this target"
        )
        self.say(self.notes[-1])
        return deadline

    def save(self, candidates: list[Candidate], **extra) -> None:
        data = {
            "config": self.requested,
            "deadline_ms": self.deadline.ms if self.deadline else None,
            "candidates": [c.report() for c in candidates],
            "trained_floats": self._floats,  # float TRNs trained (int8 candidates are quantized from them)
            "phases_s": self.phases,
            **extra,
        }
        tmp = self.out / (STATE + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, default=str))
        tmp.replace(self.out / STATE)

    # ------------------------------------------------------------ steps

    def run(self) -> SearchOutcome:
        cfg = self.cfg
        check_input_size(cfg.input_size)  # mistakes in the options are told before the data is read
        for name in cfg.models:
            models.check(name, cfg.weights)
        task = self._task_for(cfg.models[0])
        classes = len(task.classes)
        if cfg.expected_classes is not None and cfg.expected_classes != classes:
            raise ClassesMismatch(
                f"{cfg.expected_classes} classes expected, but {task.source} has {classes} "
                f"classes ({', '.join(task.classes[:10])}); expect what the data has"
            )
        if task.skipped:
            self.notes.append(f"skipped {task.skipped} unreadable image{'s' if task.skipped > 1 else ''}")
        if not cfg.precisions:
            raise ConfigError("no precision to search; give fp32, int8, fp16 or a list")
        self.keys = {
            p: RowKey(
                cfg.input_size,
                1,
                FORMAT_OF[self.target.runtime],
                self.target.runtime,
                self.target.threads,
                "block",
                classes,
                p,
            )
            for p in cfg.precisions
        }
        self.key = self.keys[cfg.precisions[0]]
        self.analyses = {m: self._analyse(m) for m in cfg.models}
        candidates = [
            self._candidate(m, a, cut, p)
            for p in cfg.precisions
            for m, a in self.analyses.items()
            for cut in candidate_cuts(a)
        ]
        self._estimate(candidates)
        deadline = self.deadline
        feasible = [c for c in candidates if c.feasible]
        self.save(candidates)
        if not feasible:
            known = [c for c in candidates if c.estimated_ms is not None]
            fastest = min(known, key=lambda c: c.estimated_ms, default=None)
            hint = (
                (
                    f"; the fastest candidate, {fastest.key}, is estimated at {fastest.estimated_ms:.3g} ms "
                    f"(+{fastest.margin_ms:.2g} ms margin)"
                )
                if fastest
                else ""
            )
            raise NoFeasibleCandidate(
                f"no candidate can meet {deadline.ms:g} ms at {cfg.quantile}{hint}", self._outcome(candidates, task)
            )
        retrained = choose(candidates, cfg.policy)
        self.say(
            f"{len(feasible)} of {len(candidates)} candidates are feasible; retraining {len(retrained)} "
            f"({cfg.policy}, {cfg.finetune})"
        )
        self._train(candidates, retrained, task)
        try:
            pick, artefact, sidecar = self._confirm(candidates, task)
        except NoFeasibleCandidate as exc:
            raise NoFeasibleCandidate(str(exc), self._outcome(candidates, task)) from None
        self._test(pick, artefact, sidecar, candidates)
        self.save(candidates, pick=pick.key if pick else None)
        return self._outcome(candidates, task, pick, artefact, sidecar)

    def _test(self, pick: Candidate, artefact: Path, sidecar: dict, candidates: list[Candidate]) -> None:
        """Test accuracy of the pick (its delivered model, in the runtime it deploys to) and of the best
        off-the-shelf network (int8: its quantized file in the runtime), on the held-out images."""
        test = self._task_for(pick.model).test
        if test is None or not len(test):
            self.notes.append("no test images: the accuracies reported are the validation images' only")
            return
        pick.test_accuracy = runtime_accuracy(artefact, test)
        sidecar["test_accuracy"], sidecar["test_images"] = pick.test_accuracy, len(test)
        (self.out / "model.json").write_text(json.dumps(sidecar, indent=1))
        best = best_off_the_shelf(candidates)
        if best is not None and best is not pick:
            task = self._task_for(best.model)
            if best.precision != FP32:
                best.test_accuracy = runtime_accuracy(self._converted_file(best), task.test)
            else:
                best.test_accuracy = evaluate(self.trained_trn(best, len(task.classes)), task.test, "cpu")

    def _quantization_of(self, c: Candidate) -> dict:
        """For model.json: how an int8 pick was quantized, how it agreed with its float twin, and how to
        feed it (a LiteRT int8 model's input and output are int8: real = scale * (q - zero_point))."""
        if c.precision == FP32:
            return {}
        summary = json.loads(self._converted_file(c).with_suffix(".json").read_text())
        return {"float_accuracy": c.float_accuracy, "quantization" if c.precision == INT8 else FP16: summary}

    def _outcome(
        self,
        candidates: list[Candidate],
        task: TaskData,
        pick: Candidate | None = None,
        artefact: Path | None = None,
        sidecar: dict | None = None,
    ) -> SearchOutcome:
        return SearchOutcome(
            candidates,
            pick,
            best_off_the_shelf(candidates),
            self.deadline,
            self.phases,
            artefact,
            sidecar,
            {"source": task.source, "classes": task.classes, **task.counts, "skipped": task.skipped},
            {"name": self.target.name, "identity": self.target.identity.key, **self.target.identity.description},
            self.notes,
        )

    @staticmethod
    def _candidate(model: str, a: NetworkAnalysis, cut: str | None, precision: str = FP32) -> Candidate:
        if cut is None:
            return Candidate(model, None, len(a.cuts), a.full_macs, a.full_params, precision=precision)
        c = a.cut(cut)
        return Candidate(model, c.name, c.index, c.macs, c.params, precision=precision)

    def _analyse(self, name: str) -> NetworkAnalysis:
        torch.manual_seed(SEED)
        model = models.build(name, self.cfg.weights, form="train")
        if reparam.needs_fusing(model):
            self._trainable[name] = analyse(model, name, self.cfg.input_size, "block", 1)
            model = reparam.fused_checked(model, (1, 3, self.cfg.input_size, self.cfg.input_size), name)
        return analyse(model, name, self.cfg.input_size, "block", 1)

    def _task_for(self, model: str) -> TaskData:
        """The task normalised as this network's weights expect (loaded once per normalisation)."""
        if self.task is not None:
            return self.task
        norm = normalization_for(self.cfg.weights, model)
        key = json.dumps(norm, sort_keys=True)
        if key not in self._tasks:
            self._tasks[key] = load_task(self.cfg.data, self.cfg.input_size, norm, SEED, TEST_FRACTION)
        return self._tasks[key]

    def _trainable_analysis(self, name: str) -> NetworkAnalysis | None:
        """For a network whose blocks fuse for deployment, its trainable form (full fine-tuning trains that
        and fuses after); None for the others. Heads train on the fused form: its backbone is frozen in
        eval mode, where both forms compute the same function."""
        return self._trainable.get(name)

    def _estimate(self, candidates: list[Candidate]) -> None:
        t0 = time.monotonic()
        self.db.add_target(self.target.identity)
        profiling_before = self.phases["profiling"]
        margins = {}
        for p, key in self.keys.items():  # each precision has its own table rows (and cost model)
            estimates = estimate_candidates(
                self.db,
                self.target.identity.key,
                key,
                self.analyses,
                self.cfg.estimator,
                self.cfg.quantile,
                self.cfg.margin_pct,
                lambda names, key=key: self._profile(names, key),
            )
            for c in candidates:
                if c.precision == p:
                    e = estimates.of(c.model, c.cut)
                    c.estimated_ms, c.uncertainty_ms, c.evidence = e.estimated_ms, e.uncertainty_ms, e.evidence
            self.notes += [f"{p}: {n}" if len(self.keys) > 1 else n for n in estimates.notes]
            margins[p] = estimates.margin_pct
        self.deadline = self.resolve_deadline()
        for p, margin in margins.items():
            mark_feasible([c for c in candidates if c.precision == p], self.deadline.ms, margin)
        self._compare_precisions(candidates)
        # Profiling inside the estimation is counted as profiling.
        self.phases["estimation"] += time.monotonic() - t0 - (self.phases["profiling"] - profiling_before)

    def _compare_precisions(self, candidates: list[Candidate]) -> None:
        """Say where int8 or fp16 does not pay on this target: a network whose converted form is estimated no
        faster than its float one (on a Cortex-A72 without dot-product instructions some int8 models are
        slower; a CPU runs fp16 through casts)."""
        if len(self.keys) < 2:
            return
        est = {(c.model, c.cut, c.precision): c.estimated_ms for c in candidates}
        for p in (q for q in self.keys if q != FP32):
            for m, a in self.analyses.items():
                pairs = [(est.get((m, cut, FP32)), est.get((m, cut, p))) for cut in candidate_cuts(a)]
                pairs = [(f, q) for f, q in pairs if f is not None and q is not None]
                slower = [(f, q) for f, q in pairs if q >= f]
                if not slower:
                    continue
                full_f, full_q = est.get((m, None, FP32)), est.get((m, None, p))
                known = full_f is not None and full_q is not None
                whole = f"the full network {full_q:.3f} ms {p} against {full_f:.3f} ms float" if known else ""
                if known and full_q >= full_f:
                    self.notes.append(
                        f"{p} {m} is slower than float on {self.target.name}: {whole}, and at {len(slower)} of its "
                        f"{len(pairs)} candidates (estimated from its tables): converting it does not pay here"
                    )
                else:
                    self.notes.append(
                        f"{p} {m} is slower than float on {self.target.name} at {len(slower)} of its {len(pairs)} "
                        f"candidates{'; ' + whole if whole else ''} (estimated from its tables)"
                    )
                self.say(f"note: {self.notes[-1]}")

    def _say_once(self, text: str) -> None:
        """A note for people and the report, given once however often its cause comes up."""
        if text not in self._said:
            self._said.add(text)
            self.notes.append(text)
            self.say(f"note: {text}")

    def _profile(self, names: list[str], key: RowKey) -> None:
        t0 = time.monotonic()
        analyses = {n: self.analyses[n] for n in names}
        # LiteRT has no per-layer profiler: every candidate is measured end to end there.
        mode = mode_for("layers" if key.runtime == "onnxruntime" else "e2e", self.target, self._say_once)
        jobs = plan(analyses, "all", mode)
        self.say(
            f"profiling {', '.join(names)} on {self.target.name} ({len(jobs)} measurements, {mode} mode, "
            f"{key.precision})"
        )
        files = ModelFiles(self.export_cache, key, analyses)
        report = run(
            jobs,
            self.target,
            self.db,
            key,
            files,
            self.cfg.timing,
            rounds=self.cfg.rounds,
            progress=lambda d, t, j: self.say(f"  [{d}/{t}] {j.label()}") if j else None,
            remeasure=self.cfg.remeasure,
        )
        for job, error in report.failed:
            self.notes.append(f"could not measure {job.label()} ({key.precision}): {error}")
        for line in report.doubts():
            self.notes.append(f"profiling {key.precision}: {line}")
            self.say(f"warning: {line}")
        self.phases["profiling"] += time.monotonic() - t0

    @staticmethod
    def _stem(c: Candidate) -> str:
        return c.key.replace(":", "_").replace("/", "_").replace("@", "__")

    def _checkpoint(self, c: Candidate) -> Path:
        """The trained float TRN's weights: an int8 candidate shares its float twin's."""
        return self.checkpoints / f"{self._stem(dataclasses.replace(c, precision=FP32))}.pt"

    def _converted_file(self, c: Candidate) -> Path:
        """An int8 or fp16 candidate's file: its trained float TRN quantized or converted, evaluated as it is."""
        return self.out / c.precision / f"{self._stem(c)}.{self.key.format}"

    def _train(self, candidates: list[Candidate], retrained: list[Candidate], task: TaskData) -> None:
        """Train the float TRNs the retrained candidates need (one per network and cut: an int8 candidate is
        its float twin quantized), then quantize and evaluate the int8 ones."""
        t0 = time.monotonic()
        done = {
            c.get("key") or c["model"] + "@" + cut_label(c["cut"]): c
            for c in self.previous.get("candidates", [])
            if c.get("trained")
        }
        todo = []
        for c in retrained:
            prior = done.get(c.key)
            if prior and self._checkpoint(c).exists() and (c.precision == FP32 or self._converted_file(c).exists()):
                c.trained, c.accuracy, c.train_seconds = True, prior["accuracy"], prior["train_seconds"]
                c.float_accuracy = prior.get("float_accuracy")
            else:
                todo.append(c)
        if len(todo) < len(retrained):
            self.say(f"resuming: {len(retrained) - len(todo)} candidates were trained already")
        units: dict[str, Candidate] = {}  # float key -> a candidate standing for the float TRN to train
        for c in todo:
            if c.float_key not in units and not (c.float_key in self._floats and self._checkpoint(c).exists()):
                units[c.float_key] = c
        classes = len(task.classes)
        train_cfg = TrainConfig(self.cfg.finetune, self.cfg.epochs, device=self.cfg.device, seed=SEED)
        by_model: dict[str, list[Candidate]] = {}
        for c in units.values():
            by_model.setdefault(c.model, []).append(c)
        for i, (name, group) in enumerate(by_model.items()):
            a, task = self.analyses[name], self._task_for(name)
            if self.cfg.finetune == "head":
                self.say(f"training heads of {name} at {len(group)} cuts ({i + 1}/{len(by_model)})")
                results = train_heads(a, [c.cut for c in group], task.train_plain, task.val, classes, train_cfg)
                for c in group:
                    self._record(c, *results[c.cut])
            else:
                for c in group:
                    self.say(f"fine-tuning {c.float_key} ({self.cfg.epochs} epochs on {self.cfg.device})")
                    torch.manual_seed(SEED)
                    trn, result = train_full(
                        build_trn(self._trainable_analysis(name) or a, c.cut, classes),
                        task.train,
                        task.val,
                        train_cfg,
                        progress=lambda s: self.say(f"  {c.float_key}: {s}"),
                    )
                    self._record(c, trn, result)
        for c in todo:
            trained = self._floats[c.float_key]
            if c.precision == FP32:
                c.trained, c.accuracy, c.train_seconds = True, trained["accuracy"], trained["train_seconds"]
            else:
                c.float_accuracy = trained["accuracy"]
        self.save(candidates)
        self.phases["training"] += time.monotonic() - t0
        self._quantize(candidates, [c for c in todo if c.precision != FP32])

    def _record(self, c: Candidate, trn: torch.nn.Module, result: TrainResult) -> None:
        torch.save(trn.state_dict(), self._checkpoint(c))
        self._floats[c.float_key] = {"accuracy": result.accuracy, "train_seconds": result.seconds}
        self.say(f"  {c.float_key}: validation accuracy {result.accuracy:.3f}")

    def _quantize(self, candidates: list[Candidate], group: list[Candidate]) -> None:
        """Quantize trained float TRNs to int8 (calibrated on a seeded subset of the training images) or convert
        them to fp16, and measure each one's validation accuracy in the runtime it deploys to. The most
        promising go first: one whose float accuracy is QUANT_SLACK below the best accuracy found so far cannot
        win (neither adds accuracy), so it costs no calibration pass; the report says so."""
        t0 = time.monotonic()
        for c in sorted(group, key=lambda c: -(c.float_accuracy or 0.0)):
            best = max(
                (x.accuracy for x in candidates if x.trained and x.feasible and x.accuracy is not None), default=None
            )
            if best is not None and c.float_accuracy is not None and c.float_accuracy + QUANT_SLACK < best:
                c.excluded = (
                    f"not quantized: float accuracy {c.float_accuracy:.1%}, more than {QUANT_SLACK:.0%} below "
                    f"the best found ({best:.1%})"
                )
                continue
            task = self._task_for(c.model)
            started, path = time.monotonic(), self._converted_file(c)
            try:
                if c.precision == INT8:
                    check_calibration(min(len(task.train_plain), self.cfg.calibration_images), len(task.classes), c.key)
                calibration, check = self._calibration_for(task)
                result = export(
                    self.trained_trn(c, len(task.classes)),
                    path,
                    self.analyses[c.model].input_shape,
                    self.key.format,
                    self._metadata(c),
                    precision=c.precision,
                    calibration=calibration if c.precision == INT8 else None,
                    check=check,
                )
            except (QuantizationError, HalfError) as exc:
                c.excluded = f"{c.precision} export failed: {exc}"
                self.notes.append(f"{exc}: {c.key} is left out, the search goes on")
                self.say(f"warning: {self.notes[-1]}")
                continue
            report = result.int8 or result.fp16
            path.with_suffix(".json").write_text(json.dumps(report.summary(), indent=1))
            c.accuracy = runtime_accuracy(path, task.val)
            c.trained, c.train_seconds = True, time.monotonic() - started
            agree = "" if report.agreement is None else f", top-1 agreement with it {report.agreement:.0%}"
            self.say(
                f"  {c.key}: validation accuracy {c.accuracy:.3f} as {c.precision} "
                f"(float {c.float_accuracy:.3f}{agree})"
            )
            self.save(candidates)
        skipped = [c for c in group if c.excluded.startswith("not quantized")]
        if skipped:
            kinds = "/".join(sorted({c.precision for c in skipped}))
            self.notes.append(
                f"{len(skipped)} feasible {kinds} candidate{'s were' if len(skipped) > 1 else ' was'} not "
                f"quantized: their float accuracy was more than {QUANT_SLACK:.0%} below the best found, which "
                "post-training quantization (or conversion to fp16) does not add"
            )
        if any(c.precision == FP16 and c.accuracy is not None for c in group):  # once, however many passes
            self._say_once(
                "fp16 accuracies were measured with onnxruntime's CPU provider on this workstation: half-precision "
                "weights, and float compute where it has no half kernel; a GPU computes in half"
            )
        self.phases["quantization"] += time.monotonic() - t0

    def _calibration_for(self, task: TaskData) -> tuple[list, list]:
        """The seeded training images that calibrate and validation images that check every int8 candidate of
        this task: read once (a folder's images are decoded from disk), not once per candidate."""
        if id(task) not in self._calibration:
            n = self.cfg.calibration_images
            self._calibration[id(task)] = (
                calibration_images(task.train_plain, n, SEED),
                calibration_images(task.val, n, SEED + 1),
            )
        return self._calibration[id(task)]

    def _metadata(self, c: Candidate) -> dict | None:
        return {"netcut.model": c.model, "netcut.cut": cut_label(c.cut)} if self.key.format == "onnx" else None

    def trained_trn(self, c: Candidate, classes: int) -> torch.nn.Module:
        """A trained candidate, from its checkpoint, in its deploy form: a network fine-tuned in its
        trainable form is fused, and checked to compute what it trained to."""
        trainable = self._trainable_analysis(c.model) if self.cfg.finetune == "full" else None
        trn = build_trn(trainable or self.analyses[c.model], c.cut, classes)
        trn.load_state_dict(torch.load(self._checkpoint(c), map_location="cpu", weights_only=True))
        if trainable is None:
            return trn.eval()
        return reparam.fused_checked(trn, self.analyses[c.model].input_shape, c.key)

    def _confirm(self, candidates: list[Candidate], task: TaskData):
        """Measure the most accurate trained feasible candidate end to end on the target; if it misses the
        deadline, it is out, and the next best is measured. Under the deepest policies a network whose
        retrained cut missed gets its next shallower feasible cut retrained in its place first, so one
        optimistic estimate does not hand the pick to a worse network."""
        t0, training_before = time.monotonic(), self.phases["training"]
        (self.out / "confirm").mkdir(exist_ok=True)
        pick, artefact, sidecar = None, None, None
        while pick is None:
            for c in ranked_for_confirmation(candidates):
                path, data = self._measure(c, task)
                if c.measured_ms <= self.deadline.ms:
                    pick, artefact, sidecar = c, *self._deliver(c, path, data, self._task_for(c.model))
                    break
                c.feasible = False
                c.confirmation = f"missed: measured {c.measured_ms:.3f} ms > {self.deadline.ms:g} ms"
                stand_in = next_shallower(candidates, c)  # None when every feasible one is trained
                self.notes.append(
                    f"{c.key} was estimated to meet the deadline but measured {c.measured_ms:.3f} ms; "
                    + (f"retraining {stand_in.key} in its place" if stand_in else "trying the next best")
                )
                self.say(self.notes[-1])
                if stand_in:
                    stand_in.retrained = True
                    self._train(candidates, [stand_in], task)
                    break  # rank again, with the stand-in
            else:
                break
        # Time spent retraining stand-ins is training, not confirmation.
        self.phases["confirmation"] += time.monotonic() - t0 - (self.phases["training"] - training_before)
        if pick is None:
            raise NoFeasibleCandidate(
                "every trained feasible candidate missed the deadline when measured on the "
                "target; raise the margin, or measure the target again if its table is old"
            )
        return pick, artefact, sidecar

    def _confirmation_run(self, model_id: str) -> AgentResult:
        result = wire.benchmark(
            self.target.client,
            model_id,
            self.key.runtime,
            self.key.threads,
            self.cfg.timing,
            providers=self.target.providers,
        )
        changed = state_changed(self.target.identity.description, result)
        if changed:
            raise TargetError(f"confirmation on {self.target.name}: {changed}")
        return result

    def _measure(self, c: Candidate, task: TaskData) -> tuple[Path, AgentResult]:
        """Export a trained candidate in the target's format and time it end to end there (kept in the table).
        An int8 candidate is measured as the very file that was quantized and evaluated."""
        key = self.keys[c.precision]
        if c.precision != FP32:
            path = self._converted_file(c)
        else:
            path = self.out / "confirm" / f"{self._stem(c)}.{self.key.format}"
            export(
                self.trained_trn(c, len(task.classes)),
                path,
                self.analyses[c.model].input_shape,
                self.key.format,
                self._metadata(c),
            )
        self.say(f"confirming {c.key} on {self.target.name}")
        model_id = self.target.client.upload(path, label=c.key)
        result = self._confirmation_run(model_id)
        if result.doubtful and self.cfg.remeasure > 0:
            self.say(f"warning: confirming {c.key}: {result.warnings[-1]}; measuring it again")
            again = self._confirmation_run(model_id)
            self.notes.append(
                f"{c.key}'s confirmation was measured again: the agent flagged the first run "
                f"({'; '.join(result.warnings)})"
            )
            result = again if not again.doubtful or again.stats.cv <= result.stats.cv else result
        if result.doubtful:
            self.notes.append(f"{c.key}'s confirmation carries the agent's warnings: {'; '.join(result.warnings)}")
        job = Job(c.model, c.cut, "e2e")
        if result.doubtful and self.db.has_steady(self.target.identity.key, c.model, key, c.cut, "e2e"):
            # A shared board's run does not overwrite a steady row: the next search would estimate from it.
            self.notes.append(f"{c.key}'s doubtful confirmation was not stored: the table keeps its steady row")
        else:
            store_result(self.db, self.target, key, job, result, replace=True, rounds=1)
        c.measured_ms = getattr(result.stats, STAT_OF[quantile_level(self.cfg.quantile)])
        return path, result

    def _deliver(self, c: Candidate, path: Path, result: AgentResult, task: TaskData) -> tuple[Path, dict]:
        """The pick as the deployable file and its sidecar."""
        fmt = self.key.format
        c.confirmation = "meets the deadline when measured"
        artefact = self.out / f"model.{fmt}"
        shutil.copyfile(path, artefact)
        sidecar = {
            "model": c.model,
            "cut": c.cut,
            "weights": self.cfg.weights,
            "classes": task.classes,
            "input_shape": list(self.analyses[c.model].input_shape),
            "normalization": self._task_for(c.model).normalization,
            **({"preprocessing": own} if (own := models.preprocessing(c.model)) else {}),
            "format": fmt,
            "precision": c.precision,
            **self._quantization_of(c),
            "accuracy": c.accuracy,
            "deadline_ms": self.deadline.ms,
            "quantile": self.cfg.quantile,
            "measured_latency_ms": {k: getattr(result.stats, k) for k in ("median_ms", "p90_ms", "p95_ms", "p99_ms")},
            "measured_n": result.stats.n,
            "throttled": result.throttled,
            "warnings": list(result.warnings),
            "interference": dataclasses.asdict(result.interference),
            "target": {
                "name": self.target.name,
                "identity": self.target.identity.key,
                **self.target.identity.description,
            },
            "netcut_version": __version__,
        }
        (self.out / "model.json").write_text(json.dumps(sidecar, indent=1))
        return artefact, sidecar
