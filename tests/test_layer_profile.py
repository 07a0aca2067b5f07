"""The logic that turns onnxruntime's profile into per-node times (unit tests on synthetic events)."""

import pytest

from netcut_agent.layer_profile import NodeEntry, layer_times, parse_ort_profile


def run(ts, dur):
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}


def kernel(name, ts, dur, op="Conv"):
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def test_kernel_times_are_medians_over_runs_without_the_first():
    events = [
        run(0, 50),
        kernel("/a/Conv", 1, 40),  # warm-up run: dropped
        run(100, 50),
        kernel("/a/Conv", 101, 100),
        kernel("/b/Relu", 150, 10, "Relu"),
        run(200, 50),
        kernel("/a/Conv", 201, 100),
        kernel("/b/Relu", 250, 10, "Relu"),
        run(300, 2000),
        kernel("/a/Conv", 301, 1000),
        kernel("/b/Relu", 1400, 12, "Relu"),
    ]  # a burst
    kernels, used = parse_ort_profile(events, skip_runs=1)
    assert used == 3
    assert kernels == [("/a/Conv", "Conv", pytest.approx(0.1)), ("/b/Relu", "Relu", pytest.approx(0.010))]


def test_fused_and_inserted_kernels_map_back_to_nodes_and_blocks():
    nodes = [
        NodeEntry("/s00_a/conv/Conv", "a", ["/s00_a/conv/Conv_output_0"]),
        NodeEntry("/s00_a/relu/Relu", "a", ["/s00_a/relu/Relu_output_0"]),
        NodeEntry("/s01_b/conv/Conv", "b", ["/s01_b/conv/Conv_output_0"]),
    ]
    kernels = [
        ("/s00_a/relu/Relu_output_0_nchwc", "FusedConv", 0.3),  # conv+relu, named after its output
        ("ReorderOutput", "ReorderOutput", 0.1),  # inserted: charged to what ran before
        ("/s01_b/conv/Conv", "Conv", 0.6),
    ]
    layers = layer_times(kernels, nodes, clean_median_ms=2.0)
    assert [(l.node, l.block) for l in layers] == [
        ("/s00_a/relu/Relu", "a"),
        ("/s00_a/relu/Relu", "a"),
        ("/s01_b/conv/Conv", "b"),
    ]
    assert sum(l.time_ms for l in layers) == pytest.approx(2.0)
    assert [l.raw_ms for l in layers] == [0.3, 0.1, 0.6]


def test_kernels_before_the_first_mapped_one_belong_to_the_first_block():
    """An int8 model's input is quantized and re-laid out before its first labelled node runs: that is the
    first block's cost, not nobody's."""
    nodes = [NodeEntry("/s00_a/conv/Conv", "a", ["/s00_a/conv/Conv_output_0"])]
    kernels = [("QuantizeLinear_token_1", "QuantizeLinear", 0.1), ("Transpose", "Transpose", 0.1)]
    kernels.append(("/s00_a/conv/Conv_token_3", "QLinearConv", 0.8))
    layers = layer_times(kernels, nodes, clean_median_ms=1.0)
    assert [(l.node, l.block) for l in layers] == [("/s00_a/conv/Conv", "a")] * 3
    assert layer_times(kernels[:2], [], clean_median_ms=1.0)[0].block == ""  # no table: nothing to map to
