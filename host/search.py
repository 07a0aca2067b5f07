"""netcut-host search: estimate, choose, retrain, confirm on the board, report.

Everything is saved as it happens under --out (state.json after every step, a checkpoint
per trained candidate), so a search killed midway continues with --resume, and a target
that dies stops the search with all measurements and training kept.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from netcut import __version__, models
from netcut.cuts import NetworkAnalysis, analyse, check_input_size
from netcut.data import BUILTIN_NORMALIZATION, IMAGENET, TaskData, load_task
from netcut.errors import NetcutError
from netcut.estimate import STAT_OF, quantile_level
from netcut.export import export
from netcut.search import (Candidate, choose, mark_feasible, next_shallower, parse_policy,
                           ranked_for_confirmation)
from netcut.training import TrainConfig, TrainResult, train_full, train_heads
from netcut.trn import build_trn
from netcut_protos.agent.v1 import agent_pb2 as pb

from .cmd_agent import result_dict
from .estimation import analytical, empirical, fit
from .profiling import DEFAULT_ROUNDS, SEED, Job, ModelFiles, plan, run, store_result
from .tables import LatencyDB, RowKey
from .targets import ConnectedTarget

log = logging.getLogger(__name__)

STATE = "state.json"
DEFAULT_MODELS = ["mobilenet_v3_small", "mobilenet_v2", "resnet18", "efficientnet_b0", "resnet50"]


class NoFeasibleCandidate(NetcutError):
    """No candidate can meet the deadline (exit code 3)."""


@dataclass
class SearchConfig:
    deadline_ms: float | None
    quantile: str = "p99"
    models: list[str] = field(default_factory=list)
    weights: str = "builtin"
    data: str = "builtin"
    estimator: str = "empirical"
    policy: str = "deepest"
    finetune: str = "head"
    epochs: int = 30
    device: str = "cpu"
    input_size: int = 32
    margin_pct: float = 5.0
    out: Path = Path("netcut-out")
    timing: dict = field(default_factory=dict)
    expected_classes: int | None = None   # --classes N: checked against the data before any work
    rounds: int = DEFAULT_ROUNDS           # profiling: windows per measurement (netcut_host.profiling.run)

    def identity(self) -> dict:
        """What must match for --resume to continue a search."""
        keep = ("deadline_ms", "quantile", "models", "weights", "data", "estimator", "policy", "finetune", "epochs",
                "input_size", "margin_pct")
        return {k: getattr(self, k) for k in keep}


@dataclass
class SearchOutcome:
    candidates: list[Candidate]
    pick: Candidate | None
    best_off_the_shelf: Candidate | None
    phases_s: dict
    artefact: Path | None
    sidecar: dict | None
    task: dict
    target: dict
    notes: list[str]


def normalization_for(weights: str) -> dict:
    return BUILTIN_NORMALIZATION if weights == "builtin" else IMAGENET


class Search:
    def __init__(self, cfg: SearchConfig, target: ConnectedTarget, db: LatencyDB, export_cache: Path,
                 say: Callable[[str], None] = lambda s: None, resume: bool = False, task: TaskData | None = None):
        self.cfg, self.target, self.db, self.say = cfg, target, db, say
        self.task = task  # given: used instead of loading cfg.data (bench/search.py holds a test split out)
        self.policy, self.k = parse_policy(cfg.policy)
        self.phases = {"estimation": 0.0, "profiling": 0.0, "training": 0.0, "confirmation": 0.0}
        self.notes: list[str] = []
        self.out = Path(cfg.out)
        self.checkpoints = self.out / "checkpoints"
        self.export_cache = export_cache
        self.requested = json.loads(json.dumps(cfg.identity()))  # before the demo resolves its deadline
        self._prepare_out(resume)

    # ------------------------------------------------------------ state

    def _prepare_out(self, resume: bool) -> None:
        state = self.out / STATE
        self.previous: dict = {}
        if state.exists():
            if not resume:
                raise NetcutError(f"{self.out} holds a search already; continue it with --resume or pass another --out")
            self.previous = json.loads(state.read_text())
            if self.previous.get("config") != self.requested:
                raise NetcutError(f"{self.out} holds a search with other options; --resume needs the same options "
                                  f"(saved: {self.previous.get('config')})")
            if self.cfg.deadline_ms is None and self.previous.get("deadline_ms"):
                self.cfg.deadline_ms = self.previous["deadline_ms"]  # the demo keeps the deadline it chose
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def save(self, candidates: list[Candidate], **extra) -> None:
        data = {"config": self.requested, "deadline_ms": self.cfg.deadline_ms,
                "candidates": [c.report() for c in candidates], "phases_s": self.phases, **extra}
        tmp = self.out / (STATE + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, default=str))
        tmp.replace(self.out / STATE)

    # ------------------------------------------------------------ steps

    def run(self) -> SearchOutcome:
        cfg = self.cfg
        check_input_size(cfg.input_size)  # mistakes in the options are told before the data is read
        for name in cfg.models:
            models.check(name, cfg.weights)
        task = self.task if self.task is not None else load_task(cfg.data, cfg.input_size,
                                                                 normalization_for(cfg.weights), SEED)
        classes = len(task.classes)
        if cfg.expected_classes is not None and cfg.expected_classes != classes:
            raise NetcutError(f"--classes {cfg.expected_classes}, but {task.source} has {classes} classes "
                              f"({', '.join(task.classes[:10])}); use --classes auto")
        if task.skipped:
            self.notes.append(f"skipped {task.skipped} unreadable image{'s' if task.skipped > 1 else ''}")
        self.key = RowKey(cfg.input_size, 1, "onnx" if self.target.runtime == "onnxruntime" else "tflite",
                          self.target.runtime, self.target.threads, "block", classes)
        self.analyses = {m: self._analyse(m) for m in cfg.models}
        self._fit_cache = dict(self.analyses)  # the cost model may also calibrate on other measured networks
        candidates = [Candidate(m, c.name, c.index, c.macs, c.params) for m, a in self.analyses.items()
                      for c in a.cuts] + [Candidate(m, None, len(a.cuts), a.full_macs, a.full_params)
                                          for m, a in self.analyses.items()]
        self._estimate(candidates)
        feasible = [c for c in candidates if c.feasible]
        self.save(candidates)
        if not feasible:
            known = [c for c in candidates if c.estimated_ms is not None]
            fastest = min(known, key=lambda c: c.estimated_ms, default=None)
            hint = (f"; the fastest candidate, {fastest.key}, is estimated at {fastest.estimated_ms:.3g} ms "
                    f"(+{fastest.margin_ms:.2g} ms margin)") if fastest else ""
            raise NoFeasibleCandidate(f"no candidate can meet {cfg.deadline_ms:g} ms at {cfg.quantile}{hint}")
        chosen = choose(candidates, self.policy, self.k)
        self.say(f"{len(feasible)} of {len(candidates)} candidates are feasible; retraining {len(chosen)} "
                 f"({cfg.policy}, {cfg.finetune})")
        self._train(candidates, chosen, task)
        pick, artefact, sidecar = self._confirm(candidates, task)
        off = [c for c in candidates if c.off_the_shelf and c.feasible and c.accuracy is not None]
        best_off = max(off, key=lambda c: c.accuracy, default=None)
        self.save(candidates, pick=pick.key if pick else None)
        return SearchOutcome(candidates, pick, best_off, self.phases, artefact, sidecar,
                             {"source": task.source, "classes": task.classes, **task.counts, "skipped": task.skipped},
                             {"name": self.target.name, "identity": self.target.target.identity,
                              **self.target.target.description}, self.notes)

    def _analyse(self, name: str) -> NetworkAnalysis:
        torch.manual_seed(SEED)
        model = models.build(name, self.cfg.weights)
        return analyse(model, name, self.cfg.input_size, "block", 1)

    def _estimates(self, name: str) -> list:
        a = self.analyses[name]
        if self.cfg.estimator == "empirical":
            return empirical(self.db, self.target.target.identity, self.key, a, self.cfg.quantile)
        return analytical(self._cost_model, a, self.key, self.cfg.quantile)

    def _estimate(self, candidates: list[Candidate]) -> None:
        t0 = time.monotonic()
        self.db.add_target(self.target.target)
        identity = self.target.target.identity
        if self.cfg.estimator == "empirical":
            missing = [m for m in self.cfg.models
                       if any(e.estimated_ms is None for e in empirical(self.db, identity, self.key,
                                                                        self.analyses[m], self.cfg.quantile))]
        else:
            try:
                self._cost_model = fit(self.db, identity, self.key, analyses=self._fit_cache)
                missing = []
            except NetcutError:
                missing = list(self.cfg.models)  # too few rows to calibrate: profile these networks first
        self.phases["estimation"] += time.monotonic() - t0
        if missing:
            self._profile(missing)
            if self.cfg.estimator == "analytical":
                self._cost_model = fit(self.db, identity, self.key, analyses=self._fit_cache)
        t0 = time.monotonic()
        for name in self.cfg.models:
            by_cut = {e.cut: e for e in self._estimates(name)}
            for c in candidates:
                if c.model == name:
                    e = by_cut[c.cut]
                    c.estimated_ms, c.uncertainty_ms, c.evidence = e.estimated_ms, e.uncertainty_ms, e.evidence
        if self.cfg.deadline_ms is None:  # the built-in demo: a deadline that makes trimming matter here
            full = sorted(c.estimated_ms for c in candidates if c.off_the_shelf and c.estimated_ms is not None)
            if not full:
                raise NetcutError("no off-the-shelf network could be estimated, so no demo deadline; pass --deadline")
            self.cfg.deadline_ms = round(full[len(full) // 2], 4)
            self.notes.append(f"no --deadline given: the demo uses {self.cfg.deadline_ms:g} ms, the median of the "
                              "off-the-shelf networks' estimates on this target")
            self.say(self.notes[-1])
        margin = self.cfg.margin_pct
        if self.cfg.estimator == "analytical":
            margin = max(margin, 200.0 * self._cost_model.relative_residual)
            self.notes.append(f"analytical margin {margin:.1f}% (twice the cost model's typical error)")
        mark_feasible(candidates, self.cfg.deadline_ms, margin)
        self.phases["estimation"] += time.monotonic() - t0

    def _profile(self, names: list[str]) -> None:
        t0 = time.monotonic()
        analyses = {n: self.analyses[n] for n in names}
        # LiteRT has no per-layer profiler: every candidate is measured end to end there.
        mode = "layers" if self.key.runtime == "onnxruntime" else "e2e"
        jobs = plan(analyses, "all", mode)
        self.say(f"profiling {', '.join(names)} on {self.target.name} ({len(jobs)} measurements, {mode} mode)")
        timing = pb.TimingConfig(**self.cfg.timing)
        files = ModelFiles(self.export_cache, self.key, analyses)
        report = run(jobs, self.target, self.db, self.key, files, timing, rounds=self.cfg.rounds,
                     progress=lambda d, t, j: self.say(f"  [{d}/{t}] {j.label()}") if j else None)
        for job, error in report.failed:
            self.notes.append(f"could not measure {job.label()}: {error}")
        self.phases["profiling"] += time.monotonic() - t0

    @staticmethod
    def _stem(c: Candidate) -> str:
        return c.key.replace(":", "_").replace("@", "__")

    def _checkpoint(self, c: Candidate) -> Path:
        return self.checkpoints / f"{self._stem(c)}.pt"

    def _train(self, candidates: list[Candidate], chosen: list[Candidate], task: TaskData) -> None:
        t0 = time.monotonic()
        done = {c["model"] + "@" + (c["cut"] or "full"): c for c in self.previous.get("candidates", [])
                if c.get("trained")}
        todo = []
        for c in chosen:
            prior = done.get(c.key)
            if prior and self._checkpoint(c).exists():
                c.trained, c.accuracy, c.train_seconds = True, prior["accuracy"], prior["train_seconds"]
            else:
                todo.append(c)
        if len(todo) < len(chosen):
            self.say(f"resuming: {len(chosen) - len(todo)} candidates were trained already")
        classes = len(task.classes)
        train_cfg = TrainConfig(self.cfg.finetune, self.cfg.epochs, device=self.cfg.device, seed=SEED)
        by_model: dict[str, list[Candidate]] = {}
        for c in todo:
            by_model.setdefault(c.model, []).append(c)
        for i, (name, group) in enumerate(by_model.items()):
            a = self.analyses[name]
            if self.cfg.finetune == "head":
                self.say(f"training heads of {name} at {len(group)} cuts ({i + 1}/{len(by_model)})")
                results = train_heads(a, [c.cut for c in group], task.train_plain, task.val, classes, train_cfg)
                for c in group:
                    self._record(c, *results[c.cut], candidates)
            else:
                for c in group:
                    self.say(f"fine-tuning {c.key} ({self.cfg.epochs} epochs on {self.cfg.device})")
                    torch.manual_seed(SEED)
                    trn, result = train_full(build_trn(a, c.cut, classes), task.train, task.val, train_cfg,
                                             progress=lambda s: self.say(f"  {c.key}: {s}"))
                    self._record(c, trn, result, candidates)
        self.phases["training"] += time.monotonic() - t0

    def _record(self, c: Candidate, trn, result: TrainResult, candidates: list[Candidate]) -> None:
        torch.save(trn.state_dict(), self._checkpoint(c))
        c.trained, c.accuracy, c.train_seconds = True, result.accuracy, result.seconds
        self.say(f"  {c.key}: validation accuracy {result.accuracy:.3f}")
        self.save(candidates)

    def trained_trn(self, c: Candidate, classes: int):
        """A trained candidate, from its checkpoint."""
        trn = build_trn(self.analyses[c.model], c.cut, classes)
        trn.load_state_dict(torch.load(self._checkpoint(c), map_location="cpu", weights_only=True))
        return trn.eval()

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
                if c.measured_ms <= self.cfg.deadline_ms:
                    pick, artefact, sidecar = c, *self._deliver(c, path, data, task)
                    break
                c.feasible = False
                c.confirmation = f"missed: measured {c.measured_ms:.3f} ms > {self.cfg.deadline_ms:g} ms"
                stand_in = next_shallower(candidates, c)  # None when every feasible one is trained
                self.notes.append(f"{c.key} was estimated to meet the deadline but measured {c.measured_ms:.3f} ms; "
                                  + (f"retraining {stand_in.key} in its place" if stand_in else "trying the next best"))
                self.say(self.notes[-1])
                if stand_in:
                    stand_in.chosen = True
                    self._train(candidates, [stand_in], task)
                    break  # rank again, with the stand-in
            else:
                break
        # Time spent retraining stand-ins is training, not confirmation.
        self.phases["confirmation"] += time.monotonic() - t0 - (self.phases["training"] - training_before)
        if pick is None:
            raise NoFeasibleCandidate("every trained feasible candidate missed the deadline when measured on the "
                                      "target; raise --margin, or profile the target again (--force) if the table is old")
        return pick, artefact, sidecar

    def _measure(self, c: Candidate, task: TaskData) -> tuple[Path, dict]:
        """Export a trained candidate in the target's format and time it end to end there (kept in the table)."""
        path = self.out / "confirm" / f"{self._stem(c)}.{self.key.format}"
        export(self.trained_trn(c, len(task.classes)), path, self.analyses[c.model].input_shape, self.key.format,
               {"netcut.model": c.model, "netcut.cut": c.cut or ""} if self.key.format == "onnx" else None)
        self.say(f"confirming {c.key} on {self.target.name}")
        model_id = self.target.client.upload(path, label=c.key)
        result = self.target.client.benchmark(pb.BenchmarkRequest(
            model_id=model_id, runtime=self.key.runtime, threads=self.key.threads,
            timing=pb.TimingConfig(**self.cfg.timing)))
        store_result(self.db, self.target, self.key, Job(c.model, c.cut, "e2e"), result, replace=True, rounds=1)
        data = result_dict(result, c.model)
        c.measured_ms = data[STAT_OF[quantile_level(self.cfg.quantile)]]
        return path, data

    def _deliver(self, c: Candidate, path: Path, data: dict, task: TaskData) -> tuple[Path, dict]:
        """The pick as the deployable file and its sidecar."""
        fmt = self.key.format
        c.confirmation = "meets the deadline when measured"
        artefact = self.out / f"model.{fmt}"
        shutil.copyfile(path, artefact)
        sidecar = {"model": c.model, "cut": c.cut, "weights": self.cfg.weights, "classes": task.classes,
                   "input_shape": list(self.analyses[c.model].input_shape),
                   "normalization": task.normalization, "format": fmt,
                   "accuracy": c.accuracy, "deadline_ms": self.cfg.deadline_ms, "quantile": self.cfg.quantile,
                   "measured_latency_ms": {k: data[k] for k in ("median_ms", "p90_ms", "p95_ms", "p99_ms")},
                   "measured_n": data["n"], "throttled": data["throttled"],
                   "target": {"name": self.target.name, "identity": self.target.target.identity,
                              **self.target.target.description},
                   "netcut_version": __version__}
        (self.out / "model.json").write_text(json.dumps(sidecar, indent=1))
        return artefact, sidecar

