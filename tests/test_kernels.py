"""The per-kernel estimator: kernels of real exports, the kernel suite on a real local agent, a network
estimated from kernel rows alone, and a new target from a reference in exactly --budget measurements."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from conftest import run_cli
from netcut.errors import NetcutError
from netcut.kernel_suite import build, select
from netcut.kernels import (
    REORDER,
    SKIPPED,
    WARM_SHARE,
    Kernel,
    KernelModel,
    fit_kernel_model,
    head_kernels,
    kernels_of,
    rescaled,
    warmth,
)
from netcut.vocabulary import KERNEL_SUITE_PREFIX

FAST = ["--min-seconds", "0.05", "--warmup-seconds", "0", "--warmup-runs", "2", "--min-runs", "10"]
SMALL = ["--input-size", "32"]


class Block(nn.Module):
    """A residual block and a squeeze-excite gate with SiLU: the fusions kernels_of must see."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc1, self.fc2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)

    def forward(self, x):  # noqa: ANN001, ANN201
        y = torch.relu(self.bn1(self.conv1(x)) + x)
        y = nn.functional.silu(self.dw(y))
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(y.mean((2, 3), keepdim=True)))))
        return y * gate


def exported(tmp_path) -> "onnx.ModelProto":  # noqa: F821, ANN001
    import onnx

    path = tmp_path / "block.onnx"
    torch.onnx.export(Block().eval(), torch.randn(1, 8, 16, 16), str(path), dynamo=False)
    return onnx.load(path)


def test_kernels_of_a_graph_follow_the_runtime_fusions(tmp_path):
    kernels = kernels_of(exported(tmp_path))
    kinds = [k.kind for k in kernels]
    # conv+bn+add+relu is one kernel; the depthwise conv's SiLU and the gate's sigmoid are kernels of their
    # own after their convolutions (a runtime may fuse them: then they measure zero); the gate's Mul too.
    assert kinds == [
        "conv.dense.k3x3s1",
        "conv.dw.k3x3s1",
        "act.silu",
        "pool.global",
        "conv.pw.s1",
        "conv.pw.s1",
        "act.sigmoid",
        "eltwise.mul",
    ]
    first, dw, silu = kernels[0], kernels[1], kernels[2]
    assert {n.split("/")[-1].split("_")[0] for n in first.nodes} >= {"Conv", "Add", "Relu"}
    assert first.macs == 8 * 16 * 16 * 8 * 9 and "add=1" in first.spec and "act=relu" in first.spec
    assert "act=silu" in dw.spec and dw.macs == 8 * 16 * 16 * 9 and dw.act == 0
    assert silu.name == dw.name + "#act" and silu.act == 8 * 16 * 16 and len(silu.nodes) == 2
    assert kernels[-1].spec.endswith("gate=1,h=16,w=16")
    # A profile entry of the convolution fused with its activation is the convolution's, whichever node
    # it maps to; the activation's own kernel (QuickGelu on x86) is the activation's.
    from netcut.kernels import kernel_times

    times = kernel_times(kernels, [[silu.nodes[-1], "Conv", "", 0.02], [silu.nodes[-1], "QuickGelu", "", 0.01]])
    assert times == {dw.name: 0.02, silu.name: 0.01}


def test_a_convolution_counts_its_macs_in_the_boards_channel_blocks(tmp_path):
    import onnx

    net = nn.Sequential(nn.Conv2d(3, 24, 3, stride=2), nn.Conv2d(24, 40, 1), nn.Conv2d(40, 40, 3, groups=40))
    path = tmp_path / "blocks.onnx"
    torch.onnx.export(net.eval(), torch.randn(1, 3, 33, 33), str(path), dynamo=False)
    stem, pw, dw = kernels_of(onnx.load(path))
    assert [k.channels for k in (stem, pw, dw)] == [(24, 3, 1), (40, 24, 1), (40, 1, 40)]
    for k in (stem, pw, dw):  # no blocks, or blocks of 8 (every count here a multiple): the MACs as they are
        assert k.macs_at(1) == k.macs_at(8) == k.macs
    assert stem.macs_at(16) == pytest.approx(stem.macs * 32 / 24)  # a stem's 3 input channels are not padded
    assert pw.macs_at(16) == pytest.approx(pw.macs * 48 / 40 * 32 / 24)
    assert dw.macs_at(16) == pytest.approx(dw.macs * 48 / 40)


def test_the_fit_chooses_the_channel_block_the_measurements_show():
    from netcut_host.kernel_estimation import TrainingData, fit_from

    def pw(i, cin, cout):
        return Kernel(f"p{i}", (f"p{i}",), "conv.pw.s1", 56 * 56 * cin * cout, 1e4, 0.0, channels=(cout, cin, 1))

    shapes = [(16, 32), (24, 40), (32, 64), (40, 80), (48, 96), (56, 112), (64, 128), (72, 144), (96, 24)] * 2
    kernels = [pw(i, cin, cout) for i, (cin, cout) in enumerate(shapes)]
    for block in (1, 16):  # a board computing 12.5 ms per GMAC of MACs counted in blocks of 1, then of 16
        times = [12.5 * k.macs_at(block) / 1e9 for k in kernels]
        wholes = [(kernels[i : i + 3], sum(times[i : i + 3])) for i in range(0, len(kernels), 3)]
        data = TrainingData([(k, t, 0.0) for k, t in zip(kernels, times)], wholes, {}, [], 0, 0.0)
        model = fit_from(data, "t")
        assert model.channel_block == block
        odd = pw(99, 40, 24)  # neither a multiple of 16
        assert model.predict(odd) == pytest.approx(12.5 * odd.macs_at(block) / 1e9, rel=0.05)
        assert KernelModel.from_json(model.to_json()).channel_block == block


def test_a_suite_model_is_the_kernel_it_was_built_from_and_runs(tmp_path):
    kernels = kernels_of(exported(tmp_path))
    chosen = select(kernels, set(), 10)
    assert len(chosen) == len({k.spec for k in kernels if k.spec})  # everything, once
    for k in chosen:
        model = build(k.spec)
        alone = [x for x in kernels_of(model) if x.block == "kernel" and not x.kind.startswith("act.")]
        assert [(x.kind, x.spec, x.macs) for x in alone] == [(k.kind, k.spec, k.macs)]
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {i.name: np.random.rand(*i.shape).astype(np.float32) for i in session.get_inputs()}
        assert np.isfinite(session.run(None, feeds)[0]).all()
    with pytest.raises(NetcutError, match="cannot build"):
        build("op=transpose,cin=3")


def test_the_kernel_model_fits_a_roofline_and_round_trips_json():
    # Two kinds with known costs: fixed 0.01 ms + 2 ms/GMAC for convs; 0.005 ms + 0.5 ms/MB for pools.
    samples = []
    for i in range(1, 9):
        conv = Kernel(f"c{i}", (f"c{i}",), "conv.pw.s1", i * 1e7, 1e4, 0.0)
        pool = Kernel(f"p{i}", (f"p{i}",), "pool.global", 0.0, i * 1e5, 0.0)
        samples += [(conv, 0.01 + 2 * i * 1e7 / 1e9), (pool, 0.005 + 0.5 * i * 1e5 / 1e6)]
    model = fit_kernel_model(samples, "t")
    fit = model.kinds["conv.pw.s1"]
    assert fit.ms_per_gmac == pytest.approx(2.0, rel=0.02) and fit.fixed_ms == pytest.approx(0.01, rel=0.05)
    assert model.kinds["pool.global"].ms_per_mb == pytest.approx(0.5, rel=0.02)
    # Extrapolates along the roofline: ten times the largest conv measured.
    big = Kernel("b", ("b",), "conv.pw.s1", 8e8, 1e4, 0.0)
    assert model.predict(big) == pytest.approx(0.01 + 1.6, rel=0.03)
    again = KernelModel.from_json(model.to_json())
    assert again == model and again.predict(big) == model.predict(big)
    estimate = model.estimate([big, samples[1][0]])
    assert estimate.low_ms <= estimate.ms <= estimate.high_ms and set(estimate.by_kind) == {"conv.pw.s1", "pool.global"}
    # Ten times the largest conv is beyond every kind's reach: still priced by the most specific, and said so.
    assert estimate.beyond == {"conv.pw.s1": (1, pytest.approx(model.predict(big)))}
    with pytest.raises(NetcutError, match="not a kernel model"):
        KernelModel.from_json('{"kinds": 3}')
    with pytest.raises(NetcutError, match="at least 6 measured kernels"):
        fit_kernel_model(samples[:3])


def test_a_kind_answers_only_as_far_as_its_data_reach():
    # Small pointwise convs, and large depthwise ones: a large pointwise conv is the parent kind's (conv).
    small = [
        (Kernel(f"p{i}", (f"p{i}",), "conv.pw.s1", i * 1e6, 1e4, 0.0), 0.01 + 5 * i * 1e6 / 1e9) for i in range(1, 9)
    ]
    large = [
        (Kernel(f"d{i}", (f"d{i}",), "conv.dw.k3s1", i * 1e8, 1e6, 0.0), 0.01 + 2 * i * 1e8 / 1e9) for i in range(1, 9)
    ]
    model = fit_kernel_model(small + large)
    near = Kernel("n", ("n",), "conv.pw.s1", 3e7, 1e4, 0.0)  # 3.75 times the largest pointwise one: still its
    far = Kernel("f", ("f",), "conv.pw.s1", 4e8, 1e4, 0.0)
    assert model.kind_for(near) == "conv.pw.s1" and model.kind_for(far) == "conv"
    assert model.estimate([far]).beyond == {} and model.estimate([near]).beyond == {}
    assert KernelModel.from_json(model.to_json()).kind_for(far) == "conv"  # the reach is stored with the fit


def test_a_family_never_measured_is_priced_by_a_broader_kind_and_said_so():
    gates = [
        (Kernel(f"g{i}", (f"g{i}",), "act.hardsigmoid", 0.0, 8e3 * i, 1e3 * i), 0.002 + 1e-6 * i) for i in range(8)
    ]
    pointwise = [
        (Kernel(f"p{i}", (f"p{i}",), "conv.pw.s1", i * 1e6, 1e4, 0.0), 0.01 + 5 * i * 1e6 / 1e9) for i in range(1, 9)
    ]
    model = fit_kernel_model(gates + pointwise)
    swish = Kernel("s", ("s",), "act.hardswish", 0.0, 8e3, 1e3)  # within the gates' reach, but never measured
    assert model.kind_for(swish) == "act" and model.unmeasured(swish)
    assert set(model.estimate([swish, pointwise[0][0]]).beyond) == {"act.hardswish"}
    assert not model.unmeasured(gates[0][0]) and not model.unmeasured(pointwise[0][0])
    dw = Kernel("d", ("d",), "conv.dw.k3s1", 1e6, 1e4, 0.0)  # only the convs' parent kind prices it
    assert model.kind_for(dw) == "conv" and model.unmeasured(dw)


def test_a_family_measured_too_seldom_for_a_kind_of_its_own_is_measured_all_the_same():
    # Three concatenations (too few for a kind of their own) and nine slices: the memory kind prices both, and a
    # concatenation is no guess; a transpose, of which none was measured, still is.
    concats = [(Kernel(f"c{i}", (f"c{i}",), "memory.concat", 0.0, 1e5 * i, 0.0), 0.002 + 1e-5 * i) for i in range(1, 4)]
    slices = [(Kernel(f"s{i}", (f"s{i}",), "memory.slice", 0.0, 1e5 * i, 0.0), 0.001 + 1e-5 * i) for i in range(1, 10)]
    model = fit_kernel_model(concats + slices)
    concat = Kernel("c", ("c",), "memory.concat", 0.0, 2e5, 0.0)
    shuffle = Kernel("t", ("t",), "memory.transpose", 0.0, 2e5, 0.0)
    assert model.kind_for(concat) == "memory" and "memory.concat" not in model.kinds
    assert model.families == {"memory.concat": 3, "memory.slice": 9}
    assert not model.unmeasured(concat) and model.unmeasured(shuffle)
    estimate = model.estimate([concat, shuffle])
    assert set(estimate.beyond) == {"memory.transpose"} and estimate.guessed
    assert not model.estimate([concat]).guessed
    assert KernelModel.from_json(model.to_json()).families == model.families


def test_the_interval_comes_from_networks_left_out_and_narrows_for_a_measured_one():
    from netcut.kernels import Z90, network_spreads

    # Two networks, one estimated 10% high and one 10% low when left out: a new one may be off by either.
    unseen, within = network_spreads({"a": [0.1, 0.12, 0.08], "b": [-0.1, -0.12, -0.08]})
    assert unseen == pytest.approx(0.1 * np.sqrt(1.5)) and within == pytest.approx(np.sqrt(4 * 0.02**2 / 4))
    assert network_spreads({"a": [0.3]}) == (0.0, 0.0)  # one network says nothing about another
    conv = Kernel("c", ("c",), "conv.pw.s1", 1e7, 1e4, 0.0)
    model = fit_kernel_model(
        [(Kernel(f"c{i}", (f"c{i}",), "conv.pw.s1", i * 1e7, 1e4, 0.0), 0.02 * i) for i in range(1, 9)]
    )
    narrow = model.estimate([conv])
    model.unseen_log_sd, model.within_log_sd = unseen, within
    new, seen = model.estimate([conv]), model.estimate([conv], corrected=True)
    assert new.ms == narrow.ms == seen.ms
    assert new.high_ms == pytest.approx(new.ms * np.exp(Z90 * np.hypot(unseen, within)))
    assert new.low_ms < seen.low_ms <= seen.ms <= seen.high_ms < new.high_ms
    assert KernelModel.from_json(model.to_json()).estimate([conv]) == new


def test_a_network_never_measured_gets_the_quantiles_of_the_networks_errors():
    from netcut.kernels import Z90, network_quantiles

    # Each network weighs alike: one with 19 TRNs within 2% and one with a single TRN 40% high. A normal
    # interval from their root mean square would be as wide below as above; the quantiles are not.
    ratios = {"many": [0.01 * (i % 5 - 2) for i in range(19)], "one": [np.log(1.4)]}
    low, high = network_quantiles(ratios)
    assert low == pytest.approx(-0.02) and high == pytest.approx(np.log(1.4))
    assert network_quantiles({"a": [0.1, 0.2]}) == (0.0, 0.0)  # one network says nothing about another
    assert network_quantiles({"a": [0.1], "b": [0.2], "c": []}) == (0.1, 0.2)
    # A network whose other 39 whole models were guesses (left out of the ratios) weighs 1/40 of one: its
    # stem's 40% no longer sets the upper bound (shufflenet's stems, at 224 px).
    assert network_quantiles(ratios, totals={"one": 40}) == pytest.approx((-0.02, 0.02))
    conv = Kernel("c", ("c",), "conv.pw.s1", 1e7, 1e4, 0.0)
    model = fit_kernel_model(
        [(Kernel(f"c{i}", (f"c{i}",), "conv.pw.s1", i * 1e7, 1e4, 0.0), 0.02 * i) for i in range(1, 9)]
    )
    model.unseen_log_sd, model.within_log_sd, model.unseen_log_q = 0.1, 0.05, (low, high)
    new, seen = model.estimate([conv]), model.estimate([conv], corrected=True)
    assert new.low_ms == pytest.approx(new.ms * np.exp(-0.02)) and new.high_ms == pytest.approx(new.ms * 1.4)
    assert seen.high_ms == pytest.approx(seen.ms * np.exp(Z90 * 0.05))  # its own TRNs corrected it: the within
    model.unseen_log_q = (0.05, 0.2)  # every network measured above its estimate: the interval still holds it
    assert model.estimate([conv]).low_ms == pytest.approx(new.ms)
    model.unseen_log_q = (low, high)
    assert (
        KernelModel.from_json(model.to_json()) == model
        and KernelModel.from_json(model.to_json()).estimate([conv]) == new
    )


def test_one_network_more_shrinks_the_spread_by_what_the_last_one_did():
    from netcut.kernels import one_network_more

    # With one network left out the errors are half those with two left out: the model that knows every
    # network is taken to err half as much again, never more than its left-out fits did.
    one_out = [([0.05, -0.05], 2), ([0.1], 1)]
    two_out = [([0.1, -0.1], 2), ([0.2], 1)]
    assert one_network_more(one_out, two_out) == pytest.approx(0.5)
    assert one_network_more(two_out, one_out) == 1.0  # more networks did worse: not widened
    assert one_network_more(one_out, []) == 1.0 and one_network_more([], two_out) == 1.0
    # Guesses count in a network's weight as in network_quantiles: a network with 1 of 10 models not a
    # guess weighs a tenth; here its 0.4 over the others' 0.2 hardly moves the factor.
    expected = 0.1 / np.sqrt((0.04 + 0.016) / 1.1)
    assert one_network_more([([0.1], 1)], [([0.2], 1), ([0.4], 10)]) == pytest.approx(expected)


def test_small_kernels_widen_the_interval_by_what_the_left_out_networks_showed():
    from netcut.kernels import GUESS_SHARE, small_variance

    # Network "big" (no small kernels) erred by 5%, "tiny" (80% of it small kernels) by 20%: the squared error
    # is 0.0025 + 0.046875 x share, a gain of 18.75 per unit share; each network weighs alike, mean share 0.4.
    errors = {"big": [0.05, -0.05], "tiny": [0.2, -0.2]}
    shares = {"big": [0.0, 0.0], "tiny": [0.8, 0.8]}
    gain, mean = small_variance(errors, shares)
    assert gain == pytest.approx(0.046875 / 0.0025) and mean == pytest.approx(0.4)
    # Errors that do not grow with the share: no gain. One network, or shares all alike: nothing to learn.
    assert small_variance({"big": [0.2, -0.2], "tiny": [0.05, -0.05]}, shares) == (0.0, pytest.approx(0.4))
    assert small_variance({"tiny": [0.2]}, {"tiny": [0.8]}) == (0.0, 0.0)
    assert small_variance(errors, {"big": [0.8, 0.8], "tiny": [0.8, 0.8]}) == (0.0, 0.0)
    # Guesses weigh as in network_quantiles: "tiny" with 18 more models that were guesses weighs a tenth.
    assert small_variance(errors, shares, totals={"tiny": 20})[1] == pytest.approx(0.8 * 0.1 / 1.1)

    # The model prices kernels of a kind; those below its networks' small price are the small share.
    model = fit_kernel_model(
        [(Kernel(f"c{i}", (f"c{i}",), "conv.pw.s1", i * 1e7, 1e4, 0.0), 0.02 * i) for i in range(1, 9)]
    )
    large = Kernel("l", ("l",), "conv.pw.s1", 8e7, 1e4, 0.0)
    small = Kernel("s", ("s",), "conv.pw.s1", 1e6, 1e4, 0.0)
    model.small_ms = {"conv.pw.s1": model.predict(large) / 2}
    assert model.small([large]) == 0.0 and model.small([small]) == 1.0
    assert model.small([large, small]) == pytest.approx(
        model.predict(small) / (model.predict(large) + model.predict(small))
    )
    model.unseen_log_sd, model.unseen_log_q = 0.1, (-0.1, 0.1)
    before = model.estimate([large, small])
    model.small_gain, model.small_mean, model.small_max = gain, mean, 1.0
    assert model.widening(mean) == 1.0 and model.widening(0.0) < 1.0 < model.widening(0.8)
    for kernels in ([large], [small], [large, small]):
        e = model.estimate(kernels)
        widen = model.widening(model.small(kernels))
        assert e.small == model.small(kernels) and not e.unlike
        assert e.high_ms == pytest.approx(e.ms * np.exp(0.1 * widen))
        assert e.low_ms == pytest.approx(e.ms * np.exp(-0.1 * widen))
    assert model.estimate([large, small]).ms == before.ms  # the estimate itself never moves
    # Smaller kernels than any network the interval was learned from: the wider of that and the kinds' own.
    model.small_max = 0.0
    e = model.estimate([small])
    assert e.unlike and e.small > model.small_max + GUESS_SHARE
    assert e.high_ms >= e.ms * np.exp(0.1 * model.widening(1.0))
    assert not model.estimate([large]).unlike
    model.kinds["conv.pw.s1"].ratio_high = 3.0  # the kind's own interval, wider: it stands for the unlike one
    assert model.estimate([small]).high_ms == pytest.approx(3 * e.ms)
    assert model.estimate([large]).high_ms == pytest.approx(
        model.estimate([large]).ms * np.exp(0.1 * model.widening(0))
    )
    assert KernelModel.from_json(model.to_json()) == model


def test_a_fitted_model_carries_the_spread_of_networks_it_left_out(tmp_path, monkeypatch):
    from netcut.kernels import one_network_more, small_variance
    from netcut_host import kernel_estimation as ke
    from netcut_host.kernel_estimation import KernelSource, estimates, fit, whole_models
    from netcut_host.tables import LatencyDB, RowKey

    db = tmp_path / "t.sqlite"
    networks = ["mnasnet0_75", "mnasnet1_0", "resnet18", "resnet34"]  # each with a relative left when one is out
    argv = ["profile", "--models", ",".join(networks), *SMALL, "--mode", "layers", *FAST, "--db", str(db)]
    result = run_cli("netcut-host", *argv)
    assert result.returncode == 0, result.stderr
    key = RowKey(input_size=32)
    shrinks = []

    def spy(one_out, two_out):
        shrinks.append((len(one_out), [len(ratios) for ratios, _ in two_out], one_network_more(one_out, two_out)))
        return shrinks[-1][-1]

    learned = []

    def small_spy(errors, shares, totals):
        learned.append((errors, shares, small_variance(errors, shares, totals)))
        return learned[-1][-1]

    with LatencyDB(db) as table:
        identity = table.targets()[0]["identity"]
        source = KernelSource(tmp_path / "exports", key, {})
        monkeypatch.setattr(ke, "one_network_more", spy)
        monkeypatch.setattr(ke, "small_variance", small_spy)
        model = fit(table, identity, key, source)
        assert model.networks == networks and model.spread_networks == 4
        assert model.unseen_log_sd > 0 and model.within_log_sd > 0
        assert fit(table, identity, key, source) == model  # stored with it, read back while the rows stand
        # Four networks: each of the 6 pairs left out too, both of its networks' whole models estimated (a pair
        # of relatives leaves the other two with mostly guesses, not counted), and the spreads scaled by what
        # one network more did.
        ((one, two, shrink),) = shrinks
        assert one == 4 and len(two) == 12 and sum(1 for n in two if n >= 5) >= 8
        assert model.unseen_shrink == shrink and 0 < shrink <= 1
        # The small kernels' gain: learned from each left-out network's models, a share for each error.
        ((errors, shares, (gain, mean)),) = learned
        assert sorted(errors) == networks and all(len(shares[n]) == len(errors[n]) for n in networks)
        assert all(0 <= x <= 1 for v in shares.values() for x in v)
        assert (model.small_gain, model.small_mean) == (gain, mean) and gain >= 0
        assert model.small_max == max(x for v in shares.values() for x in v)
        assert model.small_ms and all(ms > 0 for ms in model.small_ms.values())  # from the networks' kernels
        monkeypatch.setattr(ke, "SHRINK_MIN_NETWORKS", 5)
        unscaled = fit(table, identity, key, source, exclude=[])  # (not stored)
        assert unscaled.unseen_shrink == 1.0 and len(shrinks) == 1  # too few networks: no pairs left out
        assert model.unseen_log_q == pytest.approx(tuple(shrink * q for q in unscaled.unseen_log_q))
        assert model.unseen_log_sd == pytest.approx(shrink * unscaled.unseen_log_sd)
        assert model.within_log_sd == unscaled.within_log_sd  # a network's own TRNs' spread: not scaled
        monkeypatch.undo()
        # Each network's whole models, estimated by the model fitted without it, are what the spread is of.
        without = fit(table, identity, key, source, exclude=["mnasnet0_75", "mnasnet1_0", "resnet34"])
        assert without.networks == ["resnet18"] and without.spread_networks == 0  # one left: no spread
        wholes = whole_models(table, identity, key, source, "resnet18")
        assert len(wholes) >= 2 and all(ms > 0 and kernels for kernels, ms in wholes)
        # A family whose kernels no fit reaches (SiLU, sigmoid gates: none of these has one) is a guess, said so.
        (e,) = estimates(model, source.analysis("efficientnet_b0"), key, source, "median", [None])
        assert "a guess until netcut-host calibrate --models efficientnet_b0" in e.evidence and "act.silu" in e.evidence
        # Kinds the suite cannot build (a channel shuffle's transpose, concatenation): measured in a profile.
        (e,) = estimates(model, source.analysis("shufflenet_v2_x0_5"), key, source, "median", [None])
        assert "memory.transpose" in e.evidence and "the kernel suite cannot build them" in e.evidence
        assert "netcut-host profile --models shufflenet_v2_x0_5 --mode layers" in e.evidence
        # Kernels smaller than every network's here (every kind's small price above all of them): said so, and
        # the interval is at least the networks' own, widened for a share of 1.
        (plain,) = estimates(model, source.analysis("resnet18"), key, source, "median", [None])
        assert "smaller than those of the networks" not in plain.evidence
        model.small_ms = {kind: 1e9 for kind in model.kinds}
        model.small_gain, model.small_mean, model.small_max = 1.0, 0.2, 0.3
        (e,) = estimates(model, source.analysis("resnet18"), key, source, "median", [None])
        assert "100% of it from kernels smaller than those of the networks measured here" in e.evidence
        assert e.estimated_ms == pytest.approx(plain.estimated_ms)
        widened = np.exp(max(0.0, model.unseen_log_q[1]) * model.widening(1.0)) - 1
        assert e.uncertainty_ms >= e.estimated_ms * widened - 1e-12 and e.uncertainty_ms >= plain.uncertainty_ms


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    db = tmp_path_factory.mktemp("kernels") / "t.sqlite"
    argv = ["calibrate", "--models", "resnet18", *SMALL, "--budget", "8", *FAST, "--json", "--db", str(db)]
    result = run_cli("netcut-host", *argv)
    assert result.returncode == 0, result.stderr
    return db, json.loads(result.stdout)


def test_the_suite_measures_and_stores_kernel_rows(calibrated):
    db, out = calibrated
    assert out["measured"] == 8 and len(out["chosen"]) == 8 and sum(out["families"].values()) == 8
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT arch, mode, layers FROM measurements").fetchall()
    assert len(rows) == 8 and all(a.startswith(KERNEL_SUITE_PREFIX) and m == "layers" for a, m, _ in rows)
    assert {a[len(KERNEL_SUITE_PREFIX) :] for a, _, _ in rows} == set(out["chosen"])
    for _, _, layers in rows:  # per-node times, the profiler's own beside the normalised one
        entries = json.loads(layers)
        assert any(e[2] == "kernel" and e[3] > 0 and e[4] > 0 for e in entries)
    assert out["model"]["suite_kernels"] == 8 and out["model"]["networks"] == []
    # The board's L2 travels with every row, and the model is fitted for it (warmth).
    from netcut_agent.board import cache_bytes

    with sqlite3.connect(db) as conn:
        boards = [json.loads(b)["board"] for (b,) in conn.execute("SELECT board FROM measurements")]
    assert {b["l2_cache_bytes"] for b in boards} == {cache_bytes(2)}
    with sqlite3.connect(db) as conn:
        models = [json.loads(m) for (m,) in conn.execute("SELECT model FROM cost_models")]
    (kernel_model,) = [m for m in models if "kinds" in m]
    assert kernel_model["cache_bytes"] == cache_bytes(2)
    assert kernel_model["warm_share"] == (WARM_SHARE if cache_bytes(2) else 0.0)
    peak = kernel_model["peak_ms_per_gmac"]  # the floor of its compute rates, reported as GMAC/s
    assert out["model"]["peak_gmac_per_s"] == (round(1000 / peak, 1) if peak > 0 else None)
    assert out["model"]["channel_block"] == kernel_model["channel_block"] in (1, 8, 16)


def test_a_network_in_no_table_is_estimated_from_kernel_rows_alone(calibrated):
    db, _ = calibrated
    argv = ["estimate", "--models", "mobilenet_v3_small", *SMALL, "--estimator", "kernels", "--json", "--db", str(db)]
    result = run_cli("netcut-host", *argv, "--quantile", "median")
    assert result.returncode == 0, result.stderr
    estimates = json.loads(result.stdout)["estimates"]
    values = [e["estimated_ms"] for e in estimates]
    assert all(v > 0 for v in values) and values[-1] > values[0]  # the full network costs more than its stem
    assert all("per-kernel model" in e["evidence"] and "dominated by" in e["evidence"] for e in estimates)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM measurements WHERE arch='mobilenet_v3_small'").fetchone()[0] == 0


def test_a_new_target_from_a_reference_takes_exactly_the_budget(calibrated):
    db, _ = calibrated
    argv = ["calibrate", "--models", "resnet18", *SMALL, "--threads", "2", "--from", "local", "--budget", "10"]
    result = run_cli("netcut-host", *argv, *FAST, "--json", "--db", str(db))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["measured"] == 10 and out["model"]["measurements_used"] == 10 and out["model"]["reference"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM measurements WHERE threads=2").fetchone()[0] == 10
    estimate = run_cli(
        "netcut-host", "estimate", "--models", "resnet18", *SMALL, "--threads", "2", "--estimator", "kernels",
        "--json", "--db", str(db),
    )  # fmt: skip
    assert estimate.returncode == 0, estimate.stderr
    assert all("rescaled from" in e["evidence"] for e in json.loads(estimate.stdout)["estimates"])


def test_a_new_board_that_adds_the_same_to_every_kernel_is_rescaled_with_a_cost_per_kernel():
    # The reference: pointwise convolutions at 2 ms/GMAC. The new board runs them 1.5x slower and adds 5 us to
    # each kernel (a thread pool's hand-off): a factor alone cannot price a network of many small kernels and
    # one of few large ones at once.
    def conv(i: int, macs: float) -> Kernel:
        return Kernel(f"k{i}", (f"k{i}",), "conv.pw.s1", macs, macs / 100, 0.0)

    reference = fit_kernel_model([(conv(i, i * 1e7), 2 * i * 1e7 / 1e9) for i in range(1, 9)], "ref")
    many_small = [[conv(j, 2e5) for j in range(n)] for n in (20, 40, 60, 80, 100)]
    few_large = [[conv(j, 5e7) for j in range(n)] for n in (2, 3, 4, 5, 6)]

    def new_board(kernels: list[Kernel]) -> float:
        return sum(1.5 * reference.predict(k) + 0.005 for k in kernels)

    model = rescaled(reference, [(ks, new_board(ks)) for ks in many_small + few_large], "new")
    assert model.per_kernel_ms == pytest.approx(0.005, rel=0.05)
    unseen = [conv(j, 2e5) for j in range(50)] + [conv(99, 5e7)]  # mixed: neither kind of network measured
    assert model.estimate(unseen).ms == pytest.approx(new_board(unseen), rel=0.03)
    assert KernelModel.from_json(model.to_json()).per_kernel_ms == model.per_kernel_ms


def test_calibrate_refuses_what_it_cannot_do(calibrated, tmp_path):
    db, _ = calibrated
    unknown = run_cli("netcut-host", "calibrate", "--models", "resnet18", *SMALL, "--from", "pi9", "--db", str(db))
    assert unknown.returncode == 2 and "no kernel model of pi9" in unknown.stderr and "Traceback" not in unknown.stderr
    itself = run_cli("netcut-host", "calibrate", "--models", "resnet18", "--input-size", "48", "--from", "local",
                     "--db", str(tmp_path / "t.sqlite"))  # fmt: skip
    assert itself.returncode == 2 and "this target itself" in itself.stderr
    litert = run_cli("netcut-host", "calibrate", "--models", "resnet18", *SMALL, "--runtime", "litert",
                     "--db", str(tmp_path / "t.sqlite"))  # fmt: skip
    assert litert.returncode != 0 and "--from" in litert.stderr and "Traceback" not in litert.stderr
    int8 = run_cli("netcut-host", "calibrate", "--models", "resnet18", *SMALL, "--precision", "int8",
                   "--db", str(db))  # fmt: skip
    assert int8.returncode == 2 and "float32 kernels" in int8.stderr and "--precision int8 --mode layers" in int8.stderr
    with sqlite3.connect(db) as conn:  # nothing stored under int8
        assert conn.execute("SELECT COUNT(*) FROM measurements WHERE precision='int8'").fetchone()[0] == 0


def test_the_profilers_per_node_cost_is_taken_off_before_node_times_are_scaled_to_the_run():
    from netcut.kernels import kernel_times, per_node_overhead

    # Profiles of 3..200 nodes: raw = true + 2 us per node; the unprofiled run = true + 10 us of its own.
    rng = np.random.default_rng(0)
    profiles = []
    for n in (3, 5, 25, 60, 200):
        true = rng.uniform(0.001, 0.05, n)
        profiles.append((n, float(true.sum() + n * 0.002), float(true.sum() + 0.01)))
    assert per_node_overhead(profiles) == pytest.approx(0.002, rel=0.01)
    assert per_node_overhead(profiles[:2]) == 0.0  # too few to tell
    assert per_node_overhead([(5, 1.0, 0.9)] * 4) == 0.0  # one node count: overhead and run cost not apart
    # A small kernel and a large one, each profiled at 2 us too much, in a run of 0.105 ms.
    small, large = (Kernel(n, (n,), "conv.pw.s1", 1.0, 1.0, 0.0) for n in ("s", "l"))
    layers = [["s", "Conv", "", 0.0, 0.007], ["l", "Conv", "", 0.0, 0.102]]
    layers = [[*e[:3], e[4] * 0.105 / 0.109, e[4]] for e in layers]  # the agent's proportional scaling
    proportional = kernel_times([small, large], layers)
    corrected = kernel_times([small, large], layers, per_node_ms=0.002)
    assert proportional["s"] == pytest.approx(0.00674, rel=0.01)  # 35% too much for a 5 us kernel
    assert corrected["s"] == pytest.approx(0.005, rel=0.01) and corrected["l"] == pytest.approx(0.100, rel=0.01)
    assert sum(corrected.values()) == pytest.approx(0.105)  # still the run's time
    # Rows written before raw times were kept: left as the agent scaled them.
    assert kernel_times([small], [["s", "Conv", "", 0.004]], per_node_ms=0.002) == {"s": 0.004}
    skipped = kernel_times([small, large], layers, skip_ops=("Conv",))
    assert list(skipped) == [SKIPPED] and skipped[SKIPPED] == pytest.approx(0.105)  # said apart, not charged


def test_a_run_that_fits_the_cache_is_estimated_warmer_and_the_model_keeps_the_cache_it_was_fitted_for():
    assert warmth(1e6, 2e6, 0.1) == pytest.approx(0.9)  # all of it in the L2
    assert warmth(8e6, 2e6, 0.1) == pytest.approx(1 - 0.1 * 0.25)
    assert warmth(8e6, 0.0, 0.1) == warmth(8e6, 2e6, 0.0) == 1.0  # the board did not say, or no effect
    pw = [Kernel(f"k{i}", (f"k{i}",), "conv.pw.s1", i * 1e7, i * 1e5, 0.0) for i in range(1, 9)]
    model = fit_kernel_model([(k, 0.01 + 2 * k.macs / 1e9) for k in pw], "t")
    cold = model.estimate(pw[:1]).ms
    model.cache_bytes, model.warm_share = 2e6, 0.1
    assert model.estimate(pw[:1]).ms == pytest.approx(0.9 * cold)  # 0.1 MB: warm
    back = KernelModel.from_json(model.to_json())
    assert (back.cache_bytes, back.warm_share) == (2e6, 0.1) and back.estimate(pw[:1]).ms == pytest.approx(0.9 * cold)


def test_a_trn_head_pays_the_layout_reorder_only_after_a_blocked_kernel_and_only_where_the_board_showed_one():
    conv = Kernel("c", ("c",), "conv.pw.s1", 1e7, 1e5, 0.0)
    shuffle = Kernel("t", ("t",), "memory.transpose", 0.0, 1e5, 0.0)
    after_conv = head_kernels(32, 56 * 56, 10, "fp32", conv)
    assert after_conv[0].kind == REORDER and after_conv[0].bytes == 2 * 32 * 56 * 56 * 4
    for plain_layout in (shuffle, None):
        assert all(k.kind != REORDER for k in head_kernels(32, 49, 10, "fp32", plain_layout))
    # A board with no reorder measured (ARM, LiteRT): none priced, and no guess for it.
    plain = fit_kernel_model([(k, 0.01 + 2 * k.macs / 1e9) for k in [conv] * 6] + [(after_conv[1], 0.02)] * 6, "t")
    e = plain.estimate(after_conv)
    assert e.ms == pytest.approx(plain.estimate(after_conv[1:]).ms) and not e.guessed
    # One that showed the suite's reorders at ~0.07 ms/MB: the head is charged that.
    reorders = [(Kernel(f"r{i}", (), REORDER, 0.0, 2 * i * 4e5, 0.0), 0.001 + 0.07 * i * 0.4) for i in range(1, 9)]
    blocked = fit_kernel_model([(k, 0.01 + 2 * k.macs / 1e9) for k in [conv] * 6] + reorders, "t")
    extra = blocked.estimate(after_conv).ms - blocked.estimate(after_conv[1:]).ms
    assert extra == pytest.approx(0.001 + 0.07 * 32 * 56 * 56 * 4 / 1e6, rel=0.1)


def test_a_cut_after_an_activation_pays_the_reorder_only_where_the_board_fuses_that_activation():
    # mobilenet_v3_small's stem TRN at 96 px: its Hardswish fused into the convolution on x86, whose output
    # then leaves NCHWc (7 us of 47 in onnxruntime's ReorderOutput); a SiLU run apart leaves the plain layout.
    conv = Kernel("c", ("c",), "conv.pw.s1", 1e7, 1e5, 0.0)
    swish = Kernel("c#act", ("h",), "act.hardswish", 0.0, 1e5, 1e4)
    head = head_kernels(16, 48 * 48, 10, "fp32", swish)
    assert head[0].kind == REORDER and head[0].nodes == ("act.hardswish",) and head[0].bytes == 2 * 16 * 48 * 48 * 4
    reorders = [(Kernel(f"r{i}", (), REORDER, 0.0, 2 * i * 4e5, 0.0), 0.001 + 0.07 * i * 0.4) for i in range(1, 9)]
    convs = [(conv, 0.01 + 2 * conv.macs / 1e9)] * 6
    fuses = fit_kernel_model(convs + reorders + [(swish, 0.0)] * 6, "t")  # measured at nothing: fused
    apart = fit_kernel_model(convs + reorders + [(swish, 0.004)] * 6, "t")  # a kernel of its own
    assert fuses.fused("act.hardswish") and not apart.fused("act.hardswish") and not fuses.fused("act.silu")
    trn = [conv, swish, *head]
    paid = fuses.estimate(trn).ms - fuses.estimate([conv, swish, *head[1:]]).ms
    assert paid == pytest.approx(0.001 + 0.07 * 16 * 48 * 48 * 4 / 1e6, rel=0.1)
    assert apart.estimate(trn).ms == pytest.approx(apart.estimate([conv, swish, *head[1:]]).ms)
    back = KernelModel.from_json(fuses.to_json())
    assert back.estimate(trn).ms == pytest.approx(fuses.estimate(trn).ms)


def test_a_fixed_cost_the_sizes_cannot_tell_apart_is_not_invented():
    # Three kernels of the same MACs (resnet50's downsampling convolutions): the fit may put any part of their
    # time in the fixed cost; a kernel of a sixteenth of the MACs must not be priced at their time.
    # Their activations and weights differ as resnet50's do (halved, quadrupled at each stage).
    same = [
        (
            Kernel(f"d{i}", (f"d{i}",), "conv.pw.s2", 1e8, 6.4e6 / 2 ** (i % 3), 0.0, weight_bytes=5e5 * 4 ** (i % 3)),
            1.40 + 0.02 * (i % 3) + 0.01 * i,
        )
        for i in range(6)
    ]
    model = fit_kernel_model(same)
    small = Kernel("s", ("s",), "conv.pw.s2", 1e8 / 16, 1.6e6, 0.0, weight_bytes=3e4)
    assert model.kinds["conv.pw.s2"].fixed_ms < 0.01  # unpulled: 0.22 ms
    assert model.predict(small) == pytest.approx(1.4 / 16, rel=0.25)  # unpulled: 0.30 ms


def test_no_convolution_is_priced_faster_than_the_boards_fastest_kernels():
    # The dense convolutions' kind fitted without both resnets (224 px, this project's x86 machine): the stems
    # of five networks (3 input channels, bound by memory) and three suite kernels of 58-116 MMACs. The robust
    # fit took the suite kernels for outliers and a compute rate 30 times the board's peak, so that resnet18's
    # TRNs came out at 1/4.8 of their time. The pointwise convolutions show the peak: 11.5 ms/GMAC.
    def conv(i, kind, mmacs, mb, weight_mb=0.0):
        return Kernel(f"{kind}{i}", (f"{kind}{i}",), kind, mmacs * 1e6, mb * 1e6, 0.0, weight_bytes=weight_mb * 1e6)

    stems = [
        (conv(i, "conv.dense.k3x3s2", m, mb), ms)
        for m, mb, ms in [(10.8, 2.21, 0.249), (5.4, 1.40, 0.156), (8.1, 1.81, 0.257)]
        for i in range(6)
    ]
    suite = [
        (conv(1, "conv.dense.k3x3s1", 115.6, 2.41, 0.15), 1.473),
        (conv(2, "conv.dense.k3x3s2", 57.8, 0.60, 1.18), 0.724),
        (conv(3, "conv.dense.k3x3s1", 115.6, 0.20, 9.44), 1.663),
    ]
    pointwise = [(conv(i, "conv.pw.s1", 10 * i, 0.1), 11.5 * i / 100) for i in range(1, 9)]
    model = fit_kernel_model(stems + suite + pointwise, "t")
    assert model.peak_ms_per_gmac == pytest.approx(11.5, rel=0.01)
    big = conv(4, "conv.dense.k3x3s1", 115.6, 2.41, 0.15)  # resnet18's layer1 convolution
    assert model.kind_for(big) == "conv.dense"  # two kernels of its own kind: its parent prices it
    assert model.kinds["conv.dense"].ms_per_gmac >= 11.5 * 0.999
    assert model.predict(big) == pytest.approx(1.473, rel=0.15)  # without the floor: 0.24 ms
    assert model.predict(stems[0][0]) == pytest.approx(0.249, rel=0.15)  # the stems still priced by their bytes
    assert KernelModel.from_json(model.to_json()).peak_ms_per_gmac == model.peak_ms_per_gmac


def test_a_suite_convolution_is_not_charged_the_reorder_a_network_would_not_run():
    from netcut.kernel_suite import suite_name
    from netcut_host.kernel_estimation import isolation_reorders

    relu6 = suite_name("op=conv,act=relu6,cin=144,cout=144,g=144,h=56,k=3,s=1,w=56")
    silu = suite_name("op=conv,act=silu,cin=32,cout=32,g=32,h=112,k=3,s=1,w=112")
    assert isolation_reorders(relu6) == ("ReorderOutput",)
    assert isolation_reorders(suite_name("op=conv,add=1,cin=8,cout=8,g=1,h=8,k=1,s=1,w=8")) == ("ReorderOutput",)
    assert isolation_reorders(silu) == ()  # its activation runs apart on NCHW in a network too
    assert isolation_reorders(suite_name("op=gap,cin=8,h=7,w=7")) == ()
