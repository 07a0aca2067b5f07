"""The search's policy, as pure functions: which candidates are feasible, which to retrain.

A candidate is a TRN (a network cut after a block, plus a new head) or the full network
(cut None: the off-the-shelf baseline). Feasible means the estimated latency at the
requested quantile, plus a margin for the estimator's error, meets the deadline.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from .errors import NetcutError


@dataclass
class Candidate:
    model: str
    cut: str | None  # None: the full network
    depth: int  # cut index; the full network is deepest
    macs: int
    params: int
    estimated_ms: float | None = None
    uncertainty_ms: float | None = None
    evidence: str = ""
    margin_ms: float | None = None
    feasible: bool = False
    measured_ms: float | None = None
    accuracy: float | None = None  # on the validation images, which chose the epoch and the candidate
    test_accuracy: float | None = None  # on held-out images nothing was trained or chosen on (pick, best off-the-shelf)
    retrained: bool = False  # chosen for retraining by the policy (not "the pick")
    trained: bool = False
    train_seconds: float | None = None
    confirmation: str = ""
    precision: str = "fp32"  # int8: the trained float TRN, quantized (its accuracy measured as int8)
    float_accuracy: float | None = None  # int8: the validation accuracy of the float TRN it was quantized from
    excluded: str = ""  # why a feasible candidate was left out (its quantization failed, or could not win)

    @property
    def float_key(self) -> str:
        """The float TRN this candidate is (fp32) or is quantized from (int8): what gets trained."""
        return f"{self.model}@{self.cut or 'full'}"

    @property
    def key(self) -> str:
        return self.float_key if self.precision == "fp32" else f"{self.float_key}:{self.precision}"

    @property
    def off_the_shelf(self) -> bool:
        return self.cut is None

    def report(self) -> dict:
        data = asdict(self)
        data["key"] = self.key
        data["off_the_shelf"] = self.off_the_shelf
        return data


def parse_deadline(text: str) -> float:
    """'30ms', '0.5 ms', '2s', '800us' -> milliseconds. A bare number is refused: a hard deadline read
    in the wrong unit is wrong by a factor of a thousand."""
    m = re.fullmatch(r"\s*([-+]?[0-9]*\.?[0-9]+)\s*(ms|s|us)?\s*", str(text))
    if not m:
        raise NetcutError(f"cannot read deadline {text!r}; write e.g. 30ms, 0.5ms or 2s")
    if m.group(2) is None:
        raise NetcutError(f"the deadline {text!r} has no unit; write {m.group(1)}ms (or {m.group(1)}s, {m.group(1)}us)")
    value = float(m.group(1)) * {"ms": 1.0, "s": 1000.0, "us": 0.001}[m.group(2)]
    if value <= 0:
        raise NetcutError(f"the deadline must be positive, got {text!r}")
    return value


@dataclass(frozen=True)
class Policy:
    """Which candidates to retrain: kind is deepest, feasible or exhaustive; neighbours (deepest+K) the K
    shallower feasible cuts retrained beside the deepest one."""

    kind: str
    neighbours: int = 0

    @classmethod
    def parse(cls, text: str) -> "Policy":
        m = re.fullmatch(r"deepest\+(\d+)", text)
        if m:
            return cls("deepest", int(m.group(1)))
        if text in ("deepest", "feasible", "exhaustive"):
            return cls(text)
        raise NetcutError(f"unknown policy {text!r}; use deepest, deepest+K (e.g. deepest+2), feasible or exhaustive")

    def __str__(self) -> str:
        return f"deepest+{self.neighbours}" if self.neighbours else self.kind


def mark_feasible(candidates: list[Candidate], deadline_ms: float, margin_pct: float) -> None:
    """Feasible = estimate + margin <= deadline; margin = max(margin_pct of the estimate, its uncertainty)."""
    for c in candidates:
        if c.estimated_ms is None:
            c.feasible, c.margin_ms = False, None
            continue
        c.margin_ms = max(c.estimated_ms * margin_pct / 100.0, c.uncertainty_ms or 0.0)
        c.feasible = c.estimated_ms + c.margin_ms <= deadline_ms


# The default policy per fine-tuning mode. Head fine-tuning reads every cut's features from one forward
# pass of the backbone, so training every feasible cut's head costs about what training the deepest one
# does, and linear probes often peak at a middle cut (where `deepest` would miss it); full fine-tuning
# costs a training run per candidate, and there the deepest feasible cut is the one worth the run.
DEFAULT_POLICY = {"head": "feasible", "full": "deepest"}
DEFAULT_POLICY_WHY = {
    "head": "the default with head fine-tuning: every feasible cut's head trains on features of one forward pass",
    "full": "the default with full fine-tuning: one training run per candidate, so only the deepest feasible cut",
}


def default_policy(finetune: str) -> Policy:
    return Policy(DEFAULT_POLICY[finetune])


def choose(candidates: list[Candidate], policy: Policy) -> list[Candidate]:
    """Which candidates to retrain.

    deepest: the deepest feasible candidate of each network, per precision (the method's proposal);
    deepest+K: also its K shallower feasible neighbours; feasible: every feasible one;
    exhaustive: every candidate, feasible or not (the baseline the method saves you from).
    Feasible full networks are always trained too: they are the off-the-shelf baseline.
    """
    if policy.kind == "exhaustive":
        picked = list(candidates)
    elif policy.kind == "feasible":
        picked = [c for c in candidates if c.feasible]
    else:
        picked = []
        by_model: dict[tuple[str, str], list[Candidate]] = {}  # each network and precision its own deepest
        for c in candidates:
            if c.feasible:
                by_model.setdefault((c.model, c.precision), []).append(c)
        for group in by_model.values():
            group.sort(key=lambda c: c.depth, reverse=True)
            picked += group[: 1 + policy.neighbours]
        picked += [c for c in candidates if c.feasible and c.off_the_shelf and c not in picked]
    for c in picked:
        c.retrained = True
    return picked


def next_shallower(candidates: list[Candidate], missed: Candidate) -> Candidate | None:
    """The cut to retrain when `missed`, a network's retrained candidate, missed the deadline on the board:
    the deepest feasible candidate of the same network and precision that is shallower and not trained yet."""
    pool = [
        c
        for c in candidates
        if c.model == missed.model
        and c.precision == missed.precision
        and c.feasible
        and not c.trained
        and not c.excluded
        and c.depth < missed.depth
    ]
    return max(pool, key=lambda c: c.depth, default=None)


def pareto_front(points: list[Candidate]) -> list[Candidate]:
    """Trained candidates that no other beats on both latency and accuracy (latency ascending)."""
    trained = [c for c in points if c.accuracy is not None and latency_of(c) is not None]
    trained.sort(key=lambda c: (latency_of(c), -c.accuracy))
    front, best = [], -1.0
    for c in trained:
        if c.accuracy > best:
            front.append(c)
            best = c.accuracy
    return front


def latency_of(c: Candidate) -> float | None:
    return c.measured_ms if c.measured_ms is not None else c.estimated_ms


def ranked_for_confirmation(candidates: list[Candidate]) -> list[Candidate]:
    """Trained feasible candidates, most accurate first (ties: the faster)."""
    pool = [c for c in candidates if c.trained and c.feasible and c.accuracy is not None]
    return sorted(pool, key=lambda c: (-c.accuracy, c.estimated_ms))
