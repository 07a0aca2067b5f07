"""The search's decisions as pure functions: feasibility, what each policy retrains, the stand-in for a miss."""

from __future__ import annotations

import pytest

from netcut.policy import Candidate, Policy, choose, mark_feasible, next_shallower, ranked_for_confirmation


def network(model: str, latencies: list[float]) -> list[Candidate]:
    """Cuts 0..n-2 and the full network last (cut None), with these estimated latencies."""
    n = len(latencies)
    return [
        Candidate(model, None if i == n - 1 else f"block{i}", i, 0, 0, estimated_ms=ms)
        for i, ms in enumerate(latencies)
    ]


@pytest.fixture
def candidates() -> list[Candidate]:
    cs = network("a", [1, 2, 3, 4, 5]) + network("b", [2, 4, 6, 8])
    mark_feasible(cs, deadline_ms=4.2, margin_pct=5)  # a: 1..4 (4.2 = 4 + 5%); b: 2 and 4
    return cs


def keys(cs):
    return sorted(c.key for c in cs)


def test_feasible_is_the_estimate_plus_its_margin_within_the_deadline(candidates):
    assert keys(c for c in candidates if c.feasible) == [
        "a@block0",
        "a@block1",
        "a@block2",
        "a@block3",
        "b@block0",
        "b@block1",
    ]
    c = Candidate("c", "x", 0, 0, 0, estimated_ms=4.0, uncertainty_ms=0.5)
    mark_feasible([c], 4.2, 5)
    assert not c.feasible and c.margin_ms == 0.5  # the uncertainty, when it is larger than the percentage


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("deepest", ["a@block3", "b@block1"]),
        ("deepest+1", ["a@block2", "a@block3", "b@block0", "b@block1"]),
        ("feasible", ["a@block0", "a@block1", "a@block2", "a@block3", "b@block0", "b@block1"]),
    ],
)
def test_each_policy_retrains_what_it_says(candidates, policy, expected):
    assert keys(choose(candidates, Policy.parse(policy))) == expected
    assert str(Policy.parse(policy)) == policy


def test_exhaustive_retrains_everything_and_deepest_adds_feasible_full_networks():
    cs = network("a", [1, 2, 3])
    mark_feasible(cs, 10, 5)
    assert keys(choose(cs, Policy("deepest"))) == ["a@full"]  # the full network is the deepest feasible
    assert len(choose(network("a", [1, 2, 30]), Policy("exhaustive"))) == 3


def test_a_miss_is_replaced_by_the_deepest_untrained_feasible_cut_below_it(candidates):
    by_key = {c.key: c for c in candidates}
    missed = by_key["a@block3"]
    missed.trained = True
    by_key["a@block2"].trained = True  # already trained (deepest+1): not a stand-in
    assert next_shallower(candidates, missed).key == "a@block1"
    assert next_shallower(candidates, by_key["b@block0"]) is None  # nothing shallower
    by_key["a@block1"].trained = by_key["a@block0"].trained = True
    assert next_shallower(candidates, missed) is None


def test_confirmation_tries_the_most_accurate_first_and_the_faster_of_a_tie(candidates):
    by_key = {c.key: c for c in candidates}
    for key, accuracy in (("a@block3", 0.9), ("b@block1", 0.95), ("a@block1", 0.95), ("a@full", 0.99)):
        by_key[key].trained, by_key[key].accuracy = True, accuracy
    # a@full is not feasible, so never confirmed; b@block1 and a@block1 tie: the faster estimate first.
    assert [c.key for c in ranked_for_confirmation(candidates)] == ["a@block1", "b@block1", "a@block3"]


def test_the_default_policy_follows_the_fine_tuning_mode():
    from netcut_host.cli import build_parser
    from netcut_host.cli.search import config_from_args
    from netcut_host.search import SearchConfig

    assert str(SearchConfig(finetune="head").policy) == "feasible"
    assert str(SearchConfig(finetune="full").policy) == "deepest"
    assert str(SearchConfig(finetune="head", policy=Policy("deepest", 2)).policy) == "deepest+2"
    parser = build_parser()
    for argv, policy in ((["search"], "feasible"), (["search", "--finetune", "full"], "deepest")):
        assert str(config_from_args(parser.parse_args(argv)).policy) == policy
    # Both precisions by default, each a set of candidates; one, or both in any order, when asked.
    assert config_from_args(parser.parse_args(["search"])).precisions == ()  # auto: chosen by the target
    from types import SimpleNamespace

    from netcut_host.records import Provider
    from netcut_host.search import default_precisions

    assert default_precisions(SimpleNamespace(providers=())) == ("fp32", "int8")
    cuda_first = (Provider("CUDAExecutionProvider"), Provider("CPUExecutionProvider"))
    assert default_precisions(SimpleNamespace(providers=cuda_first)) == ("fp32", "fp16")
    assert default_precisions(SimpleNamespace(providers=cuda_first[::-1])) == ("fp32", "int8")
    assert config_from_args(parser.parse_args(["search", "--precision", "int8,fp32"])).precisions == ("fp32", "int8")
    assert config_from_args(parser.parse_args(["search", "--precision", "int8"])).precisions == ("int8",)


def test_the_plot_shows_every_candidate_at_its_estimate_and_measured_ones_apart(tmp_path):
    from netcut_host.report import plot_series, write_plots
    from netcut_host.search import Deadline, SearchConfig, SearchOutcome

    cs = [
        Candidate("a", "block0", 0, 10, 1, estimated_ms=1.0, accuracy=0.70, trained=True),
        Candidate("a", "block1", 1, 20, 1, estimated_ms=2.0, accuracy=0.90, trained=True, measured_ms=2.2),
        Candidate("a", None, 2, 30, 1, estimated_ms=3.0),  # never trained
        Candidate("b", None, 1, 15, 1, estimated_ms=1.5, accuracy=0.80, trained=True),
        Candidate("b", "block0", 0, 5, 1, estimated_ms=0.5, accuracy=0.60, trained=True),
    ]
    outcome = SearchOutcome(cs, cs[1], cs[3], Deadline(2.5, "given"), {}, None, None, {}, {"name": "t"}, [])
    s = plot_series(outcome)
    drawn = {k for _, _, k in s["off-the-shelf"] + s["trimmed (TRN)"]} | {k for _, k in s["untrained"]}
    assert drawn == {c.key for c in cs}  # every candidate, trained or not
    assert s["untrained"] == [(3.0, "a@full")]
    assert s["off-the-shelf"] == [(1.5, 0.80, "b@full")]
    assert s["measured"] == [(2.0, 2.2, 0.90, "a@block1")]  # at its estimate, and apart at its measurement
    assert s["TRN frontier"] == [(0.5, 0.60), (1.0, 0.70), (2.0, 0.90)]
    write_plots(tmp_path, SearchConfig(), outcome)
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
