"""Cut points, trimmed networks, the cost model and export, over many architecture families."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import get_graph_node_names

from conftest import DATA, run_cli
from netcut import models
from netcut.cuts import activation_at, analyse
from netcut.errors import NetcutError, TraceError
from netcut.export import NODES_KEY, export_onnx, relative_error
from netcut.trn import build_trn

# One or more per family; small inputs keep the suite fast.
ARCHITECTURES = {
    "mobilenet_v2": 64,
    "mobilenet_v3_small": 64,
    "resnet18": 64,
    "resnext50_32x4d": 64,
    "efficientnet_b0": 64,
    "densenet121": 64,
    "shufflenet_v2_x0_5": 64,
    "squeezenet1_1": 64,
    "regnet_x_400mf": 64,
    "mnasnet0_5": 64,
    "convnext_tiny": 64,
    "vgg11": 64,
    "googlenet": 64,
    "inception_v3": 96,
}


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def analysed(request):
    name = request.param
    torch.manual_seed(0)
    model = models.build(name)
    return model, analyse(model, name, ARCHITECTURES[name])


def test_cut_points_are_ordered_and_named_like_torchvision(analysed):
    model, a = analysed
    assert len(a.cuts) >= 5
    assert [c.index for c in a.cuts] == list(range(len(a.cuts)))
    assert all(x.macs < y.macs for x, y in zip(a.cuts, a.cuts[1:])), "cumulative MACs must strictly increase"
    assert all(x.params <= y.params for x, y in zip(a.cuts, a.cuts[1:]))
    assert a.cuts[-1].macs < a.full_macs and a.cuts[-1].params <= a.full_params
    _, eval_nodes = get_graph_node_names(model)
    assert all(c.node in eval_nodes for c in a.cuts)
    assert len({c.name for c in a.cuts}) == len(a.cuts)
    for c in a.cuts:
        assert c.activation_bytes == 4 * int(np.prod(c.output_shape))


def test_prefix_equals_the_full_networks_activation_at_every_cut(analysed):
    model, a = analysed
    x = torch.randn(a.input_shape)
    for cut in a.cuts:
        prefix = build_trn(a, cut, head="none")
        with torch.no_grad():
            got = prefix(x)
        want = activation_at(model, cut.node, x)
        assert tuple(got.shape) == tuple(want.shape) == cut.output_shape
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6, msg=f"prefix differs at {cut.name}")


def test_full_network_reproduces_the_original(analysed):
    model, a = analysed
    x = torch.randn(a.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(build_trn(a, None)(x), model(x), rtol=0, atol=1e-6)
        resized = build_trn(a, None, num_classes=7)(x)
    assert resized.shape == (1, 7)


def test_onnx_export_matches_torch_and_labels_every_node(analysed, tmp_path):
    _, a = analysed
    x = torch.randn(a.input_shape)
    for cut in (a.cuts[len(a.cuts) // 2], None):
        trn = build_trn(a, cut, num_classes=5)
        path = tmp_path / "m.onnx"
        export_onnx(trn, path, a.input_shape, verify=False)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            want = trn(x).numpy()
        assert relative_error(got, want) < 1e-4
        proto = onnx.load(str(path))
        assert proto.opset_import[0].version >= 17
        table = json.loads({p.key: p.value for p in proto.metadata_props}[NODES_KEY])
        labels = set(trn.labels.values())
        assert len(table) == len(proto.graph.node) and all(block in labels for _, block, _ in table)


def test_macs_match_torchvision_published_figures(analysed):
    model, a = analysed
    name = a.model_name
    published = torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"] * 1e9
    full = analyse(model, name, models.default_input_size(name))
    assert abs(full.full_macs - published) / published < 0.03
    assert full.full_params == sum(p.numel() for p in model.parameters() if p.requires_grad) or name in (
        "googlenet",
        "inception_v3",
    )  # their auxiliary heads hold parameters the eval graph never runs


def _activation_traffic(*layers, precision: str = "fp32") -> float:
    from netcut.cost import node_costs
    from netcut.features import FEATURES, _piece
    from netcut.graph import trace

    costs, _ = node_costs(trace(torch.nn.Sequential(*layers).eval()), (1, 3, 16, 16))
    return float(_piece(costs, precision)[FEATURES.index("act_mb")])


def test_activations_are_charged_by_the_pass_they_cost():
    """ReLU folds into the convolution; a clip (ReLU6) is a cheap pass over its output; SiLU a full one."""
    from torchvision.ops import Conv2dNormActivation

    out_mb = 8 * 16 * 16 * 4 / 1e6
    acts = (None, torch.nn.ReLU, torch.nn.ReLU6, torch.nn.SiLU)
    composite = {act: _activation_traffic(Conv2dNormActivation(3, 8, activation_layer=act)) for act in acts}
    assert composite[torch.nn.ReLU] == pytest.approx(composite[None])
    assert composite[torch.nn.ReLU6] - composite[None] == pytest.approx(out_mb * 0.4)
    assert composite[torch.nn.SiLU] - composite[None] == pytest.approx(out_mb)
    # The same activations as modules of their own are charged alike.
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    alone = {act: _activation_traffic(conv, *([act()] if act else [])) for act in acts}
    assert alone[torch.nn.ReLU] == pytest.approx(alone[None])
    assert alone[torch.nn.ReLU6] - alone[None] == pytest.approx(out_mb * 0.4)
    assert alone[torch.nn.SiLU] - alone[None] == pytest.approx(out_mb)


def test_int8_activations_are_charged_by_the_kernels_a_qdq_model_runs():
    """int8: ReLU and clips are the quantization range (no pass); SiLU is QLinearSigmoid + QLinearMul (2),
    Hardswish four kernels; a squeeze-excitation's activations act on its pooled vector (free); depthwise
    convolutions count their multiply-adds, 5x5 as 25/9 of a 3x3."""
    from torchvision.ops import Conv2dNormActivation, SqueezeExcitation

    from netcut.cost import node_costs
    from netcut.features import FEATURES, _piece
    from netcut.graph import trace

    out_mb = 8 * 16 * 16 * 4 / 1e6
    acts = (None, torch.nn.ReLU, torch.nn.ReLU6, torch.nn.SiLU, torch.nn.Hardswish)
    composite = {
        act: _activation_traffic(Conv2dNormActivation(3, 8, activation_layer=act), precision="int8") for act in acts
    }
    assert composite[torch.nn.ReLU] == pytest.approx(composite[None])
    assert composite[torch.nn.ReLU6] == pytest.approx(composite[None])
    assert composite[torch.nn.SiLU] - composite[None] == pytest.approx(2 * out_mb)
    assert composite[torch.nn.Hardswish] - composite[None] == pytest.approx(4 * out_mb)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    alone = {act: _activation_traffic(conv, *([act()] if act else []), precision="int8") for act in acts}
    assert alone[torch.nn.ReLU6] == pytest.approx(alone[None])
    assert alone[torch.nn.SiLU] - alone[None] == pytest.approx(2 * out_mb)
    # Float is unchanged by it: the same SiLU is one pass there.
    assert _activation_traffic(conv, torch.nn.SiLU()) - _activation_traffic(conv) == pytest.approx(out_mb)
    gated = _activation_traffic(conv, SqueezeExcitation(8, 4, scale_activation=torch.nn.Hardsigmoid), precision="int8")
    assert gated - alone[None] == pytest.approx(out_mb)  # the gate's multiply writes the map once; nothing more

    def dw_gmacs(kernel: int, precision: str) -> float:
        layer = torch.nn.Conv2d(8, 8, kernel, padding=kernel // 2, groups=8)
        costs, _ = node_costs(trace(torch.nn.Sequential(layer).eval()), (1, 8, 16, 16))
        return float(_piece(costs, precision)[FEATURES.index("dwconv_gmacs_as_3x3")])

    assert dw_gmacs(5, "fp32") == pytest.approx(dw_gmacs(3, "fp32"))
    assert dw_gmacs(5, "int8") == pytest.approx(dw_gmacs(3, "int8") * 25 / 9)


def test_layer_granularity_is_finer_and_still_ordered():
    model = models.build("mobilenet_v2")
    block = analyse(model, "mobilenet_v2", 64, "block")
    layer = analyse(model, "mobilenet_v2", 64, "layer")
    assert len(layer.cuts) > len(block.cuts)
    assert "features.2.conv.0" in {c.name for c in layer.cuts}  # inside a block without a residual
    assert not any(c.name.startswith("features.3.conv") for c in layer.cuts)  # never inside a residual
    assert all(x.macs < y.macs for x, y in zip(layer.cuts, layer.cuts[1:]))
    assert {c.node for c in block.cuts} <= {c.node for c in layer.cuts}


def test_trn_head_trains(tmp_path):
    model = models.build("mobilenet_v3_small")
    a = analyse(model, "mobilenet_v3_small", 64)
    trn = build_trn(a, "features.6", num_classes=3).train()
    loss = torch.nn.functional.cross_entropy(trn(torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert trn.head.fc.weight.grad is not None and trn.head.fc.weight.grad.abs().sum() > 0
    assert trn.cut_point.name == "features.6" and trn(torch.randn(2, 3, 64, 64)).shape == (2, 3)


def test_trns_do_not_share_weights_with_the_network_or_each_other():
    model = models.build("resnet18")
    a = analyse(model, "resnet18", 64)
    first, second = build_trn(a, "layer2.1", num_classes=3), build_trn(a, "layer3.0", num_classes=3)
    before = model.conv1.weight.clone()
    with torch.no_grad():
        for p in first.parameters():
            p.add_(1.0)  # "fine-tune" the first TRN
    assert torch.equal(model.conv1.weight, before)
    assert torch.equal(next(second.parameters()), before)


def test_networks_with_auxiliary_heads_cut_and_export(tmp_path):
    for name, size in (("googlenet", 64), ("inception_v3", 96)):
        a = analyse(models.build(name), name, size)
        cut = next(c for c in a.cuts if c.name.startswith(("inception4b", "Mixed_6b")))
        result = export_onnx(build_trn(a, cut, num_classes=4), tmp_path / f"{name}.onnx", a.input_shape)
        assert result.relative_error < 1e-4


# ---------------------------------------------------------------- weights and models


def test_custom_factory_and_state_dict_weights_round_trip(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(DATA))
    original = models.build("custom_models:tiny")
    for p in original.parameters():
        torch.nn.init.normal_(p)
    path = tmp_path / "tiny.pt"
    torch.save({"state_dict": original.state_dict()}, path)
    loaded = models.build("custom_models:tiny", str(path))
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), original(x))


def test_a_state_dict_of_a_network_that_versions_its_state_loads(tmp_path):
    """torch.save(net.state_dict()) keeps per-module state versions (_metadata); MNASNet refuses a state
    without them ("version should be set to 1 or 2 instead of None")."""
    original = models.build("mnasnet0_5")
    for m in original.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
    path = tmp_path / "mnasnet.pt"
    torch.save(original.state_dict(), path)
    loaded = models.build("mnasnet0_5", str(path))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), original(x))


def test_torchvision_weights_name_loads_from_the_cache(tmp_path, monkeypatch):
    """A weights name goes through torchvision's real loading; the cached file is one we made."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("NETCUT_OFFLINE", "1")
    weights = torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1
    made = torchvision.models.squeezenet1_1()
    torch.nn.init.constant_(made.classifier[1].bias, 0.25)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(made.state_dict(), cache / os.path.basename(weights.url))
    model = models.build("squeezenet1_1", "IMAGENET1K_V1")
    assert torch.equal(model.classifier[1].bias, made.classifier[1].bias)


def test_backbones_kept_outside_the_package_are_found_on_the_builtin_path(tmp_path, monkeypatch):
    made = torchvision.models.squeezenet1_1(num_classes=7)
    torch.nn.init.constant_(made.classifier[1].bias, 0.5)
    torch.save(
        {k: v.half() if v.is_floating_point() else v for k, v in made.state_dict().items()},
        tmp_path / "squeezenet1_1.pt",
    )
    (tmp_path / "manifest.json").write_text(json.dumps({"squeezenet1_1": {"num_classes": 7, "input_size": 32}}))
    assert "squeezenet1_1" not in models.builtin_models()
    with pytest.raises(NetcutError, match="NETCUT_BUILTIN_PATH"):
        models.build("squeezenet1_1", "builtin")
    monkeypatch.setenv("NETCUT_BUILTIN_PATH", os.pathsep.join([str(tmp_path / "absent"), str(tmp_path)]))
    shipped = set(models.builtin_models()) - {"squeezenet1_1"}
    assert "squeezenet1_1" in models.builtin_models() and shipped  # the package's own stay
    loaded = models.build("squeezenet1_1", "builtin")
    assert torch.equal(loaded.classifier[1].bias, torch.full((7,), 0.5))
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(NetcutError, match="not a readable backbone manifest"):
        models.builtin_models()


def test_offline_weights_say_how_to_pass_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("NETCUT_OFFLINE", "1")
    with pytest.raises(NetcutError, match="give the file as the weights") as offline:
        models.build("resnet18", "DEFAULT")
    assert offline.value.option == "weights"  # the command line names its flag for it: --weights
    with pytest.raises(NetcutError, match="valid: DEFAULT, IMAGENET1K_V1"):
        models.build("resnet18", "IMAGENET9K")


def test_bad_weights_files_say_what_is_wrong(tmp_path):
    wrong_arch = tmp_path / "wrong.pt"
    torch.save(models.build("resnet18").state_dict(), wrong_arch)
    with pytest.raises(NetcutError, match="missing keys.*unexpected keys"):
        models.build("mobilenet_v2", str(wrong_arch))
    wrong_classes = tmp_path / "classes.pt"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), wrong_classes)
    with pytest.raises(NetcutError, match=r"wrong shapes.*fc.weight"):
        models.build("resnet18", str(wrong_classes))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(NetcutError, match="cannot read weights file"):
        models.build("resnet18", str(garbage))
    with pytest.raises(NetcutError, match="does not exist"):
        models.build("resnet18", str(tmp_path / "absent.pt"))


def test_untraceable_model_names_the_operation(monkeypatch):
    monkeypatch.syspath_prepend(str(DATA))
    with pytest.raises(TraceError, match=r"custom_models.py:\d+ `if x.sum\(\) > 0:`"):
        analyse(models.build("custom_models:branchy"), "branchy", 16)


# ---------------------------------------------------------------- command line


def test_cuts_cli_json_has_the_documented_shape():
    out = run_cli("netcut-host", "cuts", "mobilenet_v2", "--input-size", "64", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["model"] == "mobilenet_v2" and data["input_shape"] == [1, 3, 64, 64]
    assert {"macs", "params"} <= set(data["full"])
    assert data["cuts"][3]["name"] == "features.3"
    for cut in data["cuts"]:
        assert {"index", "name", "output_shape", "macs", "params", "activation_bytes"} <= set(cut)
    table = run_cli("netcut-host", "cuts", "resnet18", "--input-size", "64")
    assert table.returncode == 0 and "layer2.1" in table.stdout


def test_export_cli_writes_a_verified_model(tmp_path):
    path = tmp_path / "r18.onnx"
    out = run_cli(
        "netcut-host",
        "export",
        "resnet18",
        "--cut",
        "layer2.1",
        "--classes",
        "10",
        "--input-size",
        "64",
        "--batch",
        "2",
        "-o",
        str(path),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["cut"] == "layer2.1" and info["input_shape"] == [2, 3, 64, 64] and info["relative_error"] < 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": np.zeros((2, 3, 64, 64), np.float32)})[0].shape == (2, 10)
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["netcut.model"] == "resnet18" and meta["netcut.cut"] == "layer2.1"


def test_export_cli_head_none_gives_the_activation(tmp_path):
    path = tmp_path / "prefix.onnx"
    out = run_cli(
        "netcut-host", "export", "resnet18", "--cut", "#3", "--head", "none", "--input-size", "64", "-o", str(path)
    )
    assert out.returncode == 0, out.stderr
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": np.zeros((1, 3, 64, 64), np.float32)})[0].shape == (1, 128, 8, 8)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["cuts", "resnet_18"], "Did you mean: resnet18"),
        (["export", "resnet18", "--cut", "layer9", "-o", "x.onnx"], "valid cuts: maxpool, layer1.0"),
        (["export", "resnet18", "--cut", "#99", "-o", "x.onnx"], "out of range"),
        (["export", "resnet18", "--cut", "3", "-o", "x.onnx"], "for the cut at index 3, write #3"),
        (["export", "resnet18", "--weights", "nope.pt", "-o", "x.onnx"], "does not exist"),
        (["cuts", "custom_models:branchy", "--input-size", "16"], "cannot be traced"),
        (["cuts", "custom_models:not_a_module"], "not a torch.nn.Module"),
        (["export", "resnet18", "-o", "x.tflite"], "should end in .onnx"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, words, tmp_path):
    out = run_cli("netcut-host", *argv, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(DATA)})
    assert out.returncode == 2, out.stderr
    assert words in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- TFLite


@pytest.mark.parametrize("name, cut", [("mobilenet_v3_small", "features.4"), ("resnet18", None)])
def test_tflite_export_matches_torch_in_litert(name, cut, tmp_path):
    pytest.importorskip("litert_torch", reason="TFLite export needs the convert extra")
    from netcut.export import export_tflite

    a = analyse(models.build(name), name, 32)
    trn = build_trn(a, cut, num_classes=3)
    result = export_tflite(trn, tmp_path / "m.tflite", a.input_shape)
    assert result.relative_error < 1e-4 and result.path.read_bytes()[4:8] == b"TFL3"


def test_tflite_export_json_is_json_though_the_converter_prints_progress(tmp_path):
    pytest.importorskip("litert_torch", reason="TFLite export needs the convert extra")
    path = tmp_path / "m.tflite"
    argv = ["export", "custom_models:tiny", "--format", "tflite", "--input-size", "16", "-o", str(path), "--json"]
    out = run_cli("netcut-host", *argv, env={**os.environ, "PYTHONPATH": str(DATA)})
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)  # nothing but the JSON on stdout
    assert info["format"] == "tflite" and info["relative_error"] < 1e-4 and path.read_bytes()[4:8] == b"TFL3"
