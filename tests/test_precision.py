"""int8 and fp16 as precisions: quantized and converted exports verified against float, tables per precision, and
searches over them on a real local agent (real onnxruntime and LiteRT sessions)."""

from __future__ import annotations

import json
import re
import sqlite3

import numpy as np
import onnx
import pytest
import torch

from conftest import run_cli
from netcut import models
from netcut.cuts import analyse
from netcut.data import BUILTIN_NORMALIZATION, TEST_FRACTION, load_task
from netcut.export import export, export_onnx
from netcut.quantize import (
    QuantizationError,
    calibration_images,
    onnx_float_ops_left,
    quantize,
    realistic_statistics,
    runtime_accuracy,
    synthetic_images,
)
from netcut.trn import build_trn
from netcut.vocabulary import parse_precisions

FAST = ["--min-seconds", "0.05", "--warmup-seconds", "0", "--warmup-runs", "2", "--min-runs", "10"]


def tiny_trn(name: str = "resnet18", cut: str | None = "layer2.0", size: int = 32):
    torch.manual_seed(0)
    a = analyse(realistic_statistics(models.build(name)), name, size, "block", 1)
    return build_trn(a, cut, 10).eval(), a


def test_precisions_parse_in_order_and_refuse_unknown_names():
    assert parse_precisions("int8, fp32") == ("fp32", "int8") and parse_precisions("int8") == ("int8",)
    assert parse_precisions("fp16,fp32,int8") == ("fp32", "int8", "fp16")
    for bad in ("bf16", "", "int4,fp32"):
        with pytest.raises(ValueError, match="use fp32, int8, fp16"):
            parse_precisions(bad)


def test_fp16_export_halves_every_weight_keeps_float_io_and_agrees_with_float(tmp_path):
    trn, a = tiny_trn()
    result = export(trn, tmp_path / "h.onnx", a.input_shape, precision="fp16")
    h = result.fp16
    assert h.float32_weights_left == [] and h.converted_initializers > 10
    assert h.relative_error < 5e-3 and h.agreement is not None and h.check_images == 4
    model = onnx.load(str(result.path))
    weights = {t.name: t.data_type for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert convs and all(weights[n.input[1]] == onnx.TensorProto.FLOAT16 for n in convs)
    io = [*model.graph.input, *model.graph.output]
    assert all(t.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for t in io)  # fed and read as before
    blocks = {b for _, b, _ in json.loads({p.key: p.value for p in model.metadata_props}["netcut.nodes"])}
    assert {"layer1.0", "layer2.0"} <= blocks  # the agent still maps kernels to blocks
    with pytest.raises(Exception, match="fp16 is exported as ONNX"):
        export(trn, tmp_path / "h.tflite", a.input_shape, fmt="tflite", precision="fp16")


@pytest.mark.parametrize("name,cut", [("resnet18", "layer3.1"), ("mobilenet_v3_small", "features.6")])
def test_onnx_int8_export_is_quantized_labelled_and_agrees_with_float(name, cut, tmp_path):
    trn, a = tiny_trn(name, cut)
    result = export(trn, tmp_path / "q.onnx", a.input_shape, "onnx", {"netcut.model": name}, precision="int8")
    q = result.int8
    # Every convolution and linear layer runs quantized once onnxruntime has optimised the graph.
    ops, left = onnx_float_ops_left(result.path)
    assert left == [] == q.float_ops_left
    float_convs = sum(1 for n in onnx.load(str(tmp_path / "q.onnx")).graph.node if n.op_type == "Conv")
    assert ops.get("QLinearConv", 0) == float_convs > 0 and ops.get("QGemm", 0) == 1
    assert q.agreement >= 0.8 and 0 < q.relative_error < 0.5 and q.check_images == q.calibration_images == 8
    # The block labels survive: every node of the quantized graph has a block, the input's quantize node the
    # first block's, and the float model's metadata is kept.
    proto = onnx.load(str(result.path))
    meta = {p.key: p.value for p in proto.metadata_props}
    table = json.loads(meta["netcut.nodes"])
    assert len(table) == len(proto.graph.node) and all(block for _, block, _ in table)
    first = next(b for n, b, _ in table if n == "input_QuantizeLinear")
    assert first == a.cuts[0].name and meta["netcut.model"] == name
    assert json.loads(meta["netcut.quantization"])["precision"] == "int8"


def test_the_random_weights_trap_is_caught(tmp_path):
    """A freshly initialised network quantized without pre-processing keeps most convolutions in float
    (shared zero biases): the check refuses such a model rather than time it as int8."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    torch.manual_seed(0)
    a = analyse(models.build("resnet18"), "resnet18", 32, "block", 1)  # default BatchNorm statistics
    export_onnx(build_trn(a, "layer3.1", 10), tmp_path / "f.onnx", a.input_shape)

    class Reader:
        def __init__(self):
            self.images = iter(synthetic_images(a.input_shape, 4))

        def get_next(self):
            x = next(self.images, None)
            return None if x is None else {"input": x}

    quantize_static(
        str(tmp_path / "f.onnx"),
        str(tmp_path / "naive.onnx"),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    _, left = onnx_float_ops_left(tmp_path / "naive.onnx")
    assert len(left) >= 5  # the trap is real: these convolutions would run in float
    # NetCut's path on the same random-weight network: nothing left in float.
    report = quantize(tmp_path / "f.onnx", tmp_path / "q.onnx", synthetic_images(a.input_shape), verify_outputs=False)
    assert report.float_ops_left == []


def test_tflite_int8_export_has_int8_io_and_agrees_with_float(tmp_path):
    pytest.importorskip("litert_torch", reason="TFLite export needs the convert extra")
    trn, a = tiny_trn("resnet18", "layer2.0")
    task = load_task("builtin", 32, BUILTIN_NORMALIZATION, 0, TEST_FRACTION)
    result = export(
        trn,
        tmp_path / "q.tflite",
        a.input_shape,
        "tflite",
        precision="int8",
        calibration=calibration_images(task.train_plain, 32),
        check=calibration_images(task.val, 32, seed=1),
    )
    q = result.int8
    assert q.float_ops_left == [] and q.quantized_ops.get("CONV_2D", 0) == 8 and q.quantized_ops["FULLY_CONNECTED"]
    (inp,), (out,) = q.inputs, q.outputs
    assert inp.dtype == out.dtype == "int8" and inp.scale > 0 and out.scale > 0
    assert q.agreement >= 0.8 and q.relative_error < 0.5 and q.check_images == 32
    # Fed as a user would (input quantized, output dequantized with the recorded parameters) in LiteRT.
    acc_int8 = runtime_accuracy(result.path, torch.utils.data.Subset(task.val, range(64)))
    assert 0.0 <= acc_int8 <= 1.0


def test_a_quantization_that_fails_verification_names_the_model(tmp_path):
    trn, a = tiny_trn()
    export_onnx(trn, tmp_path / "f.onnx", a.input_shape)
    # Calibrated on images a thousand times smaller than the ones it is checked on: outputs saturate.
    tiny = [x * 1e-3 for x in synthetic_images(a.input_shape)]
    with pytest.raises(QuantizationError, match="resnet18@layer2.0: the int8 model disagrees"):
        quantize(tmp_path / "f.onnx", tmp_path / "q.onnx", tiny, synthetic_images(a.input_shape), "resnet18@layer2.0")
    with pytest.raises(QuantizationError, match="no calibration images"):
        quantize(tmp_path / "f.onnx", tmp_path / "q.onnx", [], None, "x")


def test_export_cli_int8(tmp_path):
    out = run_cli(
        "netcut-host", "export", "resnet18", "--cut", "layer1.1", "--input-size", "32", "--classes", "10",
        "--precision", "int8", "--calibration-images", "20", "-o", str(tmp_path / "m.onnx"), "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["precision"] == "int8" and info["int8"]["float_ops_left"] == []
    assert info["int8"]["calibration_images"] == 20 and info["int8"]["quantized_ops"]["QLinearConv"] >= 5
    bad = run_cli("netcut-host", "export", "resnet18", "--precision", "int4", "-o", str(tmp_path / "x.onnx"))
    assert bad.returncode == 2 and "int4" in bad.stderr


def test_profile_int8_rows_are_kept_apart_from_float_rows(tmp_path):
    db = tmp_path / "t.sqlite"
    common = ["--models", "resnet18", "--input-size", "32", "--db", str(db), *FAST]
    for precision, mode in (("fp32", "e2e"), ("int8", "e2e"), ("int8", "layers"), ("fp16", "e2e")):
        some = ["--cuts", "layer2.0,full"] if precision == "fp16" else []  # fp16 exports are slow: two cuts
        out = run_cli("netcut-host", "profile", *common, *some, "--precision", precision, "--mode", mode, "--json")
        assert out.returncode == 0, out.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, precision, mode, cut, blocks FROM measurements").fetchall()
    by, precision_of = {}, {}
    for row_id, precision, mode, cut, blocks in rows:
        by.setdefault((precision, mode), {})[cut] = json.loads(blocks)
        precision_of[row_id] = precision
    cuts = set(by[("fp32", "e2e")])
    assert set(by[("int8", "e2e")]) == cuts and len(cuts) == 10  # the same cuts, stored twice
    assert set(by[("fp16", "e2e")]) == {"layer2.0", "full"}  # and fp16 apart again
    layers = by[("int8", "layers")]["full"]
    assert "maxpool" in layers and "layer4.0" in layers and "" not in layers  # labels survived quantization
    # Estimates read only their precision's rows.
    est = {}
    for precision in ("fp32", "int8"):
        out = run_cli("netcut-host", "estimate", *common[: -len(FAST)], "--precision", precision, "--json")
        assert out.returncode == 0, out.stderr
        est[precision] = {e["cut"]: e for e in json.loads(out.stdout)["estimates"]}
        for e in est[precision].values():
            used = [int(n) for ids in re.findall(r"rows? ([\d, ]+)", e["evidence"]) for n in re.findall(r"\d+", ids)]
            assert used and {precision_of[n] for n in used} == {precision}, e["evidence"]
    assert est["int8"]["layer4.0"]["estimated_ms"] != est["fp32"]["layer4.0"]["estimated_ms"]
    # The per-kernel model answers on int8 rows too, and says it is not validated there.
    out = run_cli("netcut-host", "estimate", *common[: -len(FAST)], "--precision", "int8", "--estimator", "kernels")
    assert out.returncode == 0, out.stderr
    assert "note: the per-kernel model is not validated on int8 models" in out.stderr and "90% interval" in out.stdout


@pytest.fixture(scope="module")
def both_precisions(tmp_path_factory):
    base = tmp_path_factory.mktemp("precision")
    db = base / "t.sqlite"

    def search(name: str, *argv: str):
        out = base / name
        result = run_cli(
            "netcut-host", "search", "--models", "resnet18", "--epochs", "3", "--deadline", "50ms",
            "--policy", "deepest", *argv, *FAST, "--out", str(out), "--db", str(db), "--json", timeout=900,
        )  # fmt: skip
        return result, out

    return search


def test_search_over_both_precisions_measures_int8_candidates_as_int8(both_precisions):
    result, out = both_precisions("both", "--precision", "fp32,int8")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["precisions"] == ["fp32", "int8"]
    keys = {(c["model"], c["cut"], c["precision"]) for c in report["candidates"]}
    assert len(keys) == len(report["candidates"]) == 20  # ten cuts of resnet18, in each precision
    int8 = [c for c in report["candidates"] if c["precision"] == "int8" and c["accuracy"] is not None]
    assert int8, "no int8 candidate was quantized and measured"
    task = load_task("builtin", 32, BUILTIN_NORMALIZATION, 0, TEST_FRACTION)
    for c in int8:  # its accuracy is the int8 model's, in onnxruntime, on the validation split
        path = out / "int8" / f"resnet18__{c['cut'] or 'full'}_int8.onnx"
        assert runtime_accuracy(path, task.val) == c["accuracy"]
        assert c["float_accuracy"] is not None
    pick = report["pick"]  # the artefact gets the same images right (a float pick's accuracy is torch's float32)
    assert round(runtime_accuracy(out / "model.onnx", task.val) * len(task.val)) == round(
        pick["accuracy"] * len(task.val)
    )


def test_an_int8_pick_is_confirmed_on_the_board_and_reproduces_its_accuracy(both_precisions):
    result, out = both_precisions("int8", "--precision", "int8", "--calibration-images", "50")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    pick, sidecar = report["pick"], json.loads((out / "model.json").read_text())
    assert pick["precision"] == sidecar["precision"] == "int8" and pick["measured_ms"] is not None
    assert sidecar["quantization"]["float_ops_left"] == [] and sidecar["quantization"]["calibration_images"] == 50
    assert sidecar["float_accuracy"] == pick["float_accuracy"]
    task = load_task("builtin", 32, BUILTIN_NORMALIZATION, 0, TEST_FRACTION)
    assert runtime_accuracy(out / "model.onnx", task.val) == pick["accuracy"] == sidecar["accuracy"]
    assert runtime_accuracy(out / "model.onnx", task.test) == sidecar["test_accuracy"]
    ops, left = onnx_float_ops_left(out / "model.onnx")
    assert left == [] and ops["QLinearConv"] > 0
    # The confirmation is stored as an int8 row of the table.
    md = (out / "report.md").read_text()
    assert "int8** —" in md and "Quantization cost" in md


def test_an_fp16_pick_is_confirmed_on_the_board_and_reproduces_its_accuracy(both_precisions):
    result, out = both_precisions("fp16", "--precision", "fp16")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    pick, sidecar = report["pick"], json.loads((out / "model.json").read_text())
    assert pick["precision"] == sidecar["precision"] == "fp16" and pick["measured_ms"] is not None
    assert sidecar["fp16"]["float32_weights_left"] == [] and sidecar["float_accuracy"] == pick["float_accuracy"]
    task = load_task("builtin", 32, BUILTIN_NORMALIZATION, 0, TEST_FRACTION)
    assert runtime_accuracy(out / "model.onnx", task.val) == pick["accuracy"] == sidecar["accuracy"]
    model = onnx.load(str(out / "model.onnx"))
    kinds = {t.data_type for t in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in kinds and onnx.TensorProto.FLOAT not in kinds
    assert any("fp16 accuracies were measured with onnxruntime's CPU provider" in n for n in report["notes"])
    assert "fp16** —" in (out / "report.md").read_text() and "Conversion to fp16" in (out / "report.md").read_text()


def test_too_few_calibration_images_leave_int8_out_and_the_search_goes_on(both_precisions):
    result, out = both_precisions("few", "--precision", "fp32,int8", "--calibration-images", "5")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["pick"]["precision"] == "fp32"
    out_ = [c for c in report["candidates"] if c["precision"] == "int8" and c["excluded"]]
    assert out_ and all("5 calibration images for 10 classes" in c["excluded"] for c in out_)
    assert any(n.startswith("resnet18@") and "left out, the search goes on" in n for n in report["notes"])
    assert (
        "| int8 |" in (out / "report.md").read_text() and "yes; int8 export failed" in (out / "report.md").read_text()
    )


def test_quantized_latency_is_not_the_float_latency(tmp_path):
    """An int8 model measured for a table really is a different model: smaller, with integer kernels."""
    trn, a = tiny_trn("resnet18", "layer4.0")
    f = export(trn, tmp_path / "f.onnx", a.input_shape)
    q = export(trn, tmp_path / "q.onnx", a.input_shape, precision="int8", verify_outputs=False)
    assert q.path.stat().st_size < 0.4 * f.path.stat().st_size
    assert np.isfinite(q.int8.seconds) and q.int8.agreement is None  # not compared: random weights
