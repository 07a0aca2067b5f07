"""Latency tables and estimators, with a real local agent, real SQLite files and tiny networks."""

from __future__ import annotations

import copy
import json
import os
import signal
import sqlite3
import subprocess
import time

import numpy as np
import pytest

from conftest import BIN, run_cli
from netcut.estimate import (
    CalibrationPoint,
    CostModel,
    EmpiricalEstimator,
    Measurement,
    fit_cost_model,
    pooled,
    quantile_uncertainty,
)
from netcut.features import FEATURES
from netcut_host.profiling import anchor_cuts, round_timing
from netcut_host.records import AgentResult, BoardDescription, BoardState, Stats, Timing
from netcut_host.tables import MIGRATIONS, SCHEMA_VERSION, LatencyDB, Row, RowKey, TableError, TargetIdentity

FAST = ["--min-seconds", "0.05", "--warmup-seconds", "0", "--warmup-runs", "2", "--min-runs", "10"]
SMALL = ["--input-size", "32"]
RESNET18_CUTS = [
    "maxpool",
    "layer1.0",
    "layer1.1",
    "layer2.0",
    "layer2.1",
    "layer3.0",
    "layer3.1",
    "layer4.0",
    "avgpool",
]


def host(*argv, db, timeout=600, **kw):
    return run_cli("netcut-host", *argv, "--db", str(db), timeout=timeout, **kw)


def count_rows(db) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    """A table with two small networks profiled in layers mode on a local agent."""
    db = tmp_path_factory.mktemp("tables") / "latency.sqlite"
    out = host("profile", "--model", "mobilenet_v3_small,resnet18", *SMALL, *FAST, "--json", db=db)
    assert out.returncode == 0, out.stderr
    return db, json.loads(out.stdout)


def test_profile_stores_a_row_per_measurement(profiled):
    db, summary = profiled
    assert summary["target"] == "local" and summary["failed"] == [] and summary["skipped"] == 0
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM measurements").fetchall()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert len(rows) == summary["measured"]
    layers = [r for r in rows if r["mode"] == "layers"]
    assert {r["model"] for r in layers} == {"mobilenet_v3_small", "resnet18"}
    for r in rows:
        samples = json.loads(r["samples"])
        assert len(samples) == r["n"] >= 10 and r["median_ms"] > 0 and r["input_size"] == 32
        assert r["runtime"] == "onnxruntime" and r["threads"] == 1 and r["identity"]
        assert json.loads(r["timing"])["min_runs"] == 10
        assert "state_start" in json.loads(r["board"])
    for r in layers:
        blocks = json.loads(r["blocks"])
        assert sum(blocks.values()) == pytest.approx(r["median_ms"], rel=1e-6)
    heads = [r for r in rows if r["mode"] == "head" and r["model"] == "resnet18"]
    assert len(heads) == 9  # one per cut of resnet18
    anchors = [r["cut"] for r in rows if r["mode"] == "anchor" and r["model"] == "resnet18"]
    assert sorted(anchors) == sorted(anchor_cuts(RESNET18_CUTS)) and len(anchors) == 4  # TRNs end to end


def test_profile_again_skips_what_is_measured(profiled):
    db, first = profiled
    out = host("profile", "--model", "resnet18", *SMALL, *FAST, "--json", db=db)
    assert out.returncode == 0, out.stderr
    again = json.loads(out.stdout)
    assert again["measured"] == 0 and again["skipped"] == 1 + 9 + 4  # profile, heads, anchors


def test_empirical_estimate_every_cut_from_the_profile(profiled):
    db, _ = profiled
    out = host("estimate", "--model", "resnet18", *SMALL, "--json", db=db)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["estimator"] == "empirical" and data["quantile"] == "p99" and data["target"] == "local"
    cuts = [e["cut"] for e in data["estimates"]]
    assert cuts[0] == "maxpool" and cuts[-1] is None and len(cuts) == 10
    values = [e["estimated_ms"] for e in data["estimates"]]
    assert all(v > 0 for v in values)
    anchors = set(anchor_cuts(RESNET18_CUTS))
    for e in data["estimates"][:-1]:
        if e["cut"] in anchors:
            assert "measured end to end" in e["evidence"]
        else:  # the profile summed to the cut, corrected by the anchors around it
            assert "per-layer profile" in e["evidence"] and "corrected" in e["evidence"] and "4 TRNs" in e["evidence"]
    assert all(e["uncertainty_ms"] >= 0 for e in data["estimates"])
    p50 = json.loads(host("estimate", "--model", "resnet18", *SMALL, "--quantile", "p50", "--json", db=db).stdout)
    assert all(a["estimated_ms"] <= b["estimated_ms"] for a, b in zip(p50["estimates"], data["estimates"]))
    # The deepest cut takes longer than the first: on medians (a p99 on a loaded CI machine can invert it).
    assert p50["estimates"][-2]["estimated_ms"] > p50["estimates"][0]["estimated_ms"]
    # At options nothing was measured at (the default 224 px), the message names the options that were.
    other = host("estimate", "--model", "resnet18", db=db)
    assert other.returncode == 2 and "no estimate for resnet18 at 224 px" in other.stderr
    assert "the table has resnet18 on local at: --input-size 32 --threads 1 --runtime onnxruntime" in other.stderr


def test_measured_end_to_end_rows_win(profiled, tmp_path):
    db, _ = profiled
    out = host("profile", "--model", "resnet18", "--cuts", "layer2.1", "--mode", "e2e", *SMALL, *FAST, db=db)
    assert out.returncode == 0, out.stderr
    data = json.loads(host("estimate", "--model", "resnet18", "--cut", "layer2.1", *SMALL, "--json", db=db).stdout)
    assert len(data["estimates"]) == 1 and "measured end to end" in data["estimates"][0]["evidence"]


def test_analytical_estimate_is_fitted_and_stored_as_json(profiled):
    db, _ = profiled
    out = host("estimate", "--model", "resnet18", *SMALL, "--estimator", "analytical", "--json", db=db)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert all(e["estimated_ms"] > 0 and "cost model" in e["evidence"] for e in data["estimates"])
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT model FROM cost_models").fetchall()
    assert stored and CostModel.from_json(stored[0][0]).fitted_on == ["mobilenet_v3_small", "resnet18"]
    # A network never measured on the target is estimated too.
    out = host("estimate", "--model", "squeezenet1_1", *SMALL, "--estimator", "analytical", "--json", db=db)
    assert out.returncode == 0, out.stderr
    assert all(e["estimated_ms"] > 0 for e in json.loads(out.stdout)["estimates"])
    out = host("estimate", "--model", "squeezenet1_1", *SMALL, db=db)
    assert out.returncode == 2 and "profile first" in out.stderr


def test_validate_scores_both_estimators(profiled):
    db, _ = profiled
    out = host("validate", *SMALL, *FAST, "--cuts-per-model", "2", "--json", db=db)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["held_out_measurements"] == 6  # 2 cuts + the full network, for each of 2 networks
    for k in ("empirical", "analytical_leave_one_network_out", "kernels_leave_one_network_out"):
        assert data[k]["n"] > 0 and data[k]["median_ape_pct"] >= 0
        assert data[k]["worst_ape_pct"] >= data[k]["p95_ape_pct"] >= 0
    # Each network's held-out cuts by the kernel model of the other's profile: an interval per cut.
    assert data["kernels_leave_one_network_out"]["n"] == 6 and 0 <= data["kernels_interval_90_coverage"] <= 1


def test_table_shows_exports_and_imports(profiled, tmp_path):
    db, _ = profiled
    shown = run_cli("netcut-host", "table", "--db", str(db), "--model", "resnet18")
    assert (
        shown.returncode == 0 and "layer2.1" in shown.stdout and "AMD" in shown.stdout or "target local" in shown.stdout
    )
    csv_out = run_cli("netcut-host", "table", "--db", str(db), "--csv")
    assert csv_out.stdout.splitlines()[0].startswith("id,target,identity,model")
    exported = tmp_path / "table.json"
    assert run_cli("netcut-host", "table", "export", str(exported), "--db", str(db)).returncode == 0
    other = tmp_path / "other.sqlite"
    out = run_cli("netcut-host", "table", "import", str(exported), "--db", str(other))
    assert out.returncode == 0 and f"imported {count_rows(db)} rows" in out.stdout
    out = run_cli("netcut-host", "table", "import", str(exported), "--db", str(other))
    assert "imported 0 rows" in out.stdout
    same = json.loads(host("estimate", "--model", "resnet18", *SMALL, "--json", db=other).stdout)
    original = json.loads(host("estimate", "--model", "resnet18", *SMALL, "--json", db=db).stdout)
    assert same["estimates"] == original["estimates"]
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"hello": 1}')
    before = count_rows(other)
    out = run_cli("netcut-host", "table", "import", str(garbage), "--db", str(other))
    assert out.returncode == 2 and "not a NetCut table export" in out.stderr and count_rows(other) == before


def test_rows_of_another_identity_are_kept_apart(profiled, tmp_path):
    db, _ = profiled
    exported = tmp_path / "t.json"
    run_cli("netcut-host", "table", "export", str(exported), "--db", str(db))
    data = json.loads(exported.read_text())
    # This machine's own table at another thread count: that choice's table, not a stray to warn about.
    own = copy.deepcopy(data["targets"][0])
    own["identity"] = "threads20000000"
    own["description"] = json.dumps({**json.loads(own["description"]), "threads": 2})
    own_rows = [{**m, "identity": own["identity"], "threads": 2} for m in copy.deepcopy(data["measurements"])]
    for t in data["targets"]:
        t["identity"], t["description"] = "other0000000000", json.dumps({"cpu_model": "Cortex-A72", "threads": 1})
    for m in data["measurements"]:
        m["identity"] = "other0000000000"
    data["targets"].append(own)
    data["measurements"] += own_rows
    exported.write_text(json.dumps(data))
    mixed = tmp_path / "mixed.sqlite"
    run_cli("netcut-host", "table", "import", str(exported), "--db", str(mixed))
    out = host("estimate", "--model", "resnet18", *SMALL, "--json", db=mixed)
    assert out.returncode == 2 and "another identity" in out.stderr  # nothing of this machine's own
    assert out.stderr.count("another identity") == 1 and "Cortex-A72" in out.stderr
    shown = run_cli("netcut-host", "table", "--db", str(mixed))
    assert "Cortex-A72" in shown.stdout


def test_killed_profile_keeps_committed_rows_and_resumes(tmp_path):
    db = tmp_path / "kill.sqlite"
    slow = ["--min-seconds", "0.4", "--warmup-seconds", "0", "--min-runs", "10"]
    argv = [str(BIN / "netcut-host"), "profile", "--model", "resnet18", "--mode", "e2e", *SMALL, *slow, "--db", str(db)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            if db.exists() and count_rows(db) >= 3:
                break
        except sqlite3.OperationalError:
            continue
    os.killpg(proc.pid, signal.SIGKILL)  # the host and its local agent, mid-measurement
    proc.wait()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT n, samples, median_ms FROM measurements").fetchall()
    committed = len(rows)
    assert 3 <= committed < 10
    assert all(len(json.loads(samples)) == n and median > 0 for n, samples, median in rows)
    out = host("profile", "--model", "resnet18", "--mode", "e2e", *SMALL, *FAST, "--json", db=db)
    assert out.returncode == 0, out.stderr
    resumed = json.loads(out.stdout)
    assert resumed["skipped"] == committed and resumed["measured"] == 10 - committed
    with sqlite3.connect(db) as conn:
        keys = conn.execute("SELECT cut FROM measurements").fetchall()
    assert len(keys) == len(set(keys)) == 10  # every TRN once, none twice


def job_rounds(db) -> dict:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT cut, mode, round FROM measurements").fetchall()
    out = {}
    for cut, mode, r in rows:
        out.setdefault((cut, mode), []).append(r)
    return {k: sorted(v) for k, v in out.items()}


def test_rounds_split_measurements_pool_and_resume(tmp_path):
    db = tmp_path / "rounds.sqlite"
    what = [
        "--model",
        "mobilenet_v3_small",
        "--cuts",
        "features.1,features.3",
        "--mode",
        "both",
        *SMALL,
        *FAST,
        "--json",
    ]
    out = host("profile", *what, "--rounds", "2", db=db)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["measured"] == 10  # (2 e2e + layers + 2 heads) x 2 rounds
    rounds = job_rounds(db)
    assert len(rounds) == 5 and all(r == [0, 1] for r in rounds.values())
    with sqlite3.connect(db) as conn:
        timing = [json.loads(t) for (t,) in conn.execute("SELECT timing FROM measurements WHERE mode='e2e'")]
        e2e = conn.execute(
            "SELECT id, n, samples FROM measurements WHERE mode='e2e' AND cut=? ORDER BY round",
            (anchor_cut := "features.3",),
        ).fetchall()
    assert all(t["min_runs"] == 5 for t in timing)  # each round is half of --min-runs 10
    shown = host("table", "--model", "mobilenet_v3_small", db=db).stdout
    assert shown.count(" round 2") == 5 and len([l for l in shown.splitlines() if " onnx " in l]) == 10
    # The estimate pools both rounds: every sample of both rows.
    out = host(
        "estimate", "--model", "mobilenet_v3_small", "--cut", anchor_cut, *SMALL, "--quantile", "p50", "--json", db=db
    )
    assert out.returncode == 0, out.stderr
    estimate = json.loads(out.stdout)["estimates"][0]
    samples = [x for _, _, s in e2e for x in json.loads(s)]
    assert estimate["estimated_ms"] == pytest.approx(float(np.quantile(samples, 0.5)))
    assert f"rows {e2e[0][0]}, {e2e[1][0]}, n={sum(n for _, n, _ in e2e)}" in estimate["evidence"]
    # More rounds later: only the missing round is measured; fewer with --force: the extra rounds go.
    out = host("profile", *what, "--rounds", "3", db=db)
    assert json.loads(out.stdout)["measured"] == 5 and all(r == [0, 1, 2] for r in job_rounds(db).values())
    out = host("profile", *what, "--rounds", "3", db=db)
    assert json.loads(out.stdout)["measured"] == 0 and json.loads(out.stdout)["skipped"] == 5
    out = host("profile", *what, "--force", db=db)
    assert json.loads(out.stdout)["measured"] == 5 and all(r == [0] for r in job_rounds(db).values())
    out = host("profile", *what, "--rounds", "0", db=db)
    assert out.returncode == 2 and "--rounds" in out.stderr and "at least 1" in out.stderr


def test_round_timing_splits_the_windows():
    whole = Timing(min_seconds=6.0, min_runs=50)
    third = round_timing(whole, 3)
    assert (third.min_seconds, third.min_runs, third.warmup_seconds, third.warmup_runs) == (
        pytest.approx(2.0),
        17,
        pytest.approx(1.0 / 3),
        4,
    )  # warm-up: the agent's 1 s, 10 runs
    assert round_timing(whole, 1) == whole
    head = round_timing(whole, 2, head=True)
    assert head.min_seconds == pytest.approx(0.25) and head.warmup_seconds == pytest.approx(0.1)


def test_pooled_rounds_recompute_statistics_and_blocks():
    a = Measurement(1, "m", None, "layers", 3, 2.0, 2.0, 2.0, 2.0, (1.0, 2.0, 3.0), {"x": 1.0, "y": 1.0})
    b = Measurement(2, "m", None, "layers", 3, 5.0, 5.0, 5.0, 5.0, (4.0, 5.0, 6.0), {"x": 3.0, "y": 2.0})
    p = pooled([a, b])
    assert p.n == 6 and p.ids == (1, 2) and p.median_ms == pytest.approx(3.5)
    assert p.p99_ms == pytest.approx(float(np.quantile([1, 2, 3, 4, 5, 6], 0.99)))
    # Blocks averaged (x 2.0, y 1.5), then scaled to sum to the pooled median.
    assert p.blocks == {"x": pytest.approx(2.0 * 3.5 / 3.5), "y": pytest.approx(1.5 * 3.5 / 3.5)}
    assert sum(p.blocks.values()) == pytest.approx(3.5)
    assert pooled([a]) is a and a.rows_text() == "row 1" and p.rows_text() == "rows 1, 2"


def test_a_schema_1_table_migrates_keeping_its_rows(tmp_path):
    path = tmp_path / "v1.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(MIGRATIONS[1] + "; PRAGMA user_version = 1;")
        conn.execute("INSERT INTO targets VALUES ('abc', 'pi4', '{}', 0)")
        conn.execute(
            "INSERT INTO measurements (target, identity, model, arch, input_size, batch, cut, granularity, "
            "format, runtime, runtime_version, threads, mode, classes, timing, n, median_ms, mean_ms, "
            "p90_ms, p95_ms, p99_ms, min_ms, max_ms, std_ms, cv, samples, blocks, layers, board, throttled, "
            "clock_dropped, model_id, agent_version, measured_at) VALUES ('pi4', 'abc', 'm', 'm', 32, 1, "
            "'a', 'block', 'onnx', 'onnxruntime', '1', 1, 'e2e', 10, '{}', 2, 1.5, 1.5, 1.9, 1.9, 1.9, "
            "1.0, 2.0, 0.5, 0.3, '[1.0, 2.0]', '{}', '[]', '{}', 0, 0, 'x', '0', 0)"
        )
    with LatencyDB(path) as db:
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        rows = db.rows()
        assert len(rows) == 1 and rows[0]["round"] == 0 and rows[0]["median_ms"] == 1.5
        assert rows[0]["precision"] == "fp32"  # rows from before precisions were float
        assert db.rounds("abc", "m", RowKey(input_size=32), "a", "e2e") == {0}
        assert db.rounds("abc", "m", RowKey(input_size=32, precision="int8"), "a", "e2e") == set()
        assert db.integrity() == "ok"


def test_bad_databases_are_refused_and_left_intact(tmp_path):
    newer = tmp_path / "newer.sqlite"
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    out = run_cli("netcut-host", "table", "--db", str(newer))
    assert out.returncode == 2 and "newer NetCut" in out.stderr and "Traceback" not in out.stderr
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"definitely not sqlite" * 100)
    before = corrupt.read_bytes()
    out = run_cli("netcut-host", "estimate", "--model", "resnet18", "--db", str(corrupt), *SMALL)
    assert out.returncode == 2 and "not a valid NetCut database" in out.stderr
    assert corrupt.read_bytes() == before


def test_unreachable_target_and_a_runtime_it_lacks(tmp_path, agent_factory):
    out = host(
        "profile", "--model", "resnet18", "--target", "pi4", "--agent", "127.0.0.1:9", *SMALL, db=tmp_path / "x.sqlite"
    )
    assert out.returncode == 4 and "cannot reach the agent" in out.stderr
    blocker = tmp_path / "blocked"
    for package in ("ai_edge_litert", "tflite_runtime"):
        (blocker / package).mkdir(parents=True)
        (blocker / package / "__init__.py").write_text("raise ImportError('not on this board')\n")
    a = agent_factory(env={"PYTHONPATH": str(blocker)})
    out = host(
        "profile",
        "--model",
        "resnet18",
        "--target",
        "pi4",
        "--agent",
        a.address,
        "--format",
        "tflite",
        "--mode",
        "e2e",
        *SMALL,
        db=tmp_path / "x.sqlite",
    )
    assert out.returncode == 2 and "cannot run litert" in out.stderr
    out = host("profile", "--model", "resnet18", "--target", "pi4", *SMALL, db=tmp_path / "x.sqlite")
    assert out.returncode == 2 and "needs --agent" in out.stderr


def result(n: int, warnings: tuple[str, ...] = ()) -> AgentResult:
    """An agent's result with n samples of 1 ms and the given warnings."""
    return AgentResult(
        "0" * 64,
        "0",
        "onnxruntime",
        "1",
        "CPUExecutionProvider",
        1,
        Stats(n, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0),
        (1.0,) * n,
        1.0,
        1.0,
        False,
        False,
        warnings,
        Timing(),
        (),
        BoardDescription(),
        BoardState(),
        BoardState(),
    )


def test_a_row_is_steady_until_only_doubtful_runs_stand(tmp_path):
    """What the search asks before a confirmation on a busy board replaces a table row."""
    db = LatencyDB(tmp_path / "t.sqlite")
    target = TargetIdentity("t", {"cpu_model": "x"})
    db.add_target(target)
    busy = ("busy: other processes used 1.2 cores on average during the run",)
    assert not db.has_steady(target.key, "m", RowKey(), "a", "e2e")  # never measured
    db.add(Row("t", target.key, "m", RowKey(), "a", "e2e", result(3, busy)))
    assert not db.has_steady(target.key, "m", RowKey(), "a", "e2e")
    db.add(Row("t", target.key, "m", RowKey(), "a", "e2e", result(3, ("threads exceed cores",))), replace=True)
    assert db.has_steady(target.key, "m", RowKey(), "a", "e2e")  # a warning that casts no doubt
    assert not db.has_steady(target.key, "m", RowKey(precision="int8"), "a", "e2e")  # another row's key


def test_a_full_disk_keeps_committed_rows(tmp_path):
    db = LatencyDB(tmp_path / "full.sqlite")
    target = TargetIdentity("t", {"cpu_model": "x"})
    db.add_target(target)

    first = db.add(Row("t", target.key, "m", RowKey(), "a", "e2e", result(3)))
    pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
    db.conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk full"
    with pytest.raises(TableError, match="free some disk space"):
        db.add(Row("t", target.key, "m", RowKey(), "b", "e2e", result(200_000)))
    assert db.integrity() == "ok"
    assert [r["id"] for r in db.rows()] == [first]


# ---------------------------------------------------------------- estimator logic (pure)


def test_quantile_uncertainty_shrinks_with_more_samples():
    rng = np.random.default_rng(0)
    few = quantile_uncertainty(rng.normal(10, 1, 50), 0.5)
    many = quantile_uncertainty(rng.normal(10, 1, 5000), 0.5)
    assert 0 < many < few < 1.0


def test_cost_model_recovers_known_weights_and_round_trips_json():
    rng = np.random.default_rng(1)
    truth = np.array([3.0, 10.0, 1.0, 0.05, 0.02, 0.001, 0.01])
    points = [
        CalibrationPoint(f"m{i % 3}", f, float(np.dot(truth, f)))
        for i, f in enumerate(rng.uniform(0.01, 1.0, (60, len(FEATURES))))
    ]
    model = fit_cost_model(points, "t")
    assert np.allclose(model.weights, truth, rtol=1e-6)
    assert model.relative_residual < 1e-9
    again = CostModel.from_json(model.to_json())
    assert again == model
    noisy = [CalibrationPoint("m", f, float(abs(rng.normal(1.0, 0.5)))) for f in rng.uniform(0, 1, (30, len(FEATURES)))]
    assert all(w >= 0 for w in fit_cost_model(noisy, "t").weights)


def test_empirical_estimator_explains_what_it_lacks():
    class Table:
        def __init__(self, rows):
            self.rows = rows

        def measurements(self, model):
            return self.rows

    full = Measurement(1, "m", None, "layers", 3, 4.0, 4.4, 4.5, 4.6, (4.0, 4.0, 4.4), {"a": 1.0, "b": 3.0})
    head = Measurement(2, "m", "a", "head", 3, 0.1, 0.1, 0.1, 0.1, (0.1, 0.1, 0.1))
    estimator = EmpiricalEstimator(Table([full, head]))
    e = estimator.estimate("m", ["a", "b"], "a", "median")
    assert e.estimated_ms == pytest.approx(1.0 + 0.1) and e.rows == [1, 2]
    p99 = estimator.estimate("m", ["a", "b"], "a", "p99")
    assert p99.estimated_ms == pytest.approx(1.0 * 4.6 / 4.0 + 0.1)
    missing = estimator.estimate("m", ["a", "b"], "b", "median")
    assert missing.estimated_ms is None and "no measured head" in missing.evidence
    assert EmpiricalEstimator(Table([])).estimate("m", ["a"], "a").estimated_ms is None

    # Anchors (TRNs measured end to end) correct the profile: ratio measured/profile-estimate, interpolated
    # along the profile's cumulative share, with 1 at the full network.
    blocks = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}
    full = Measurement(1, "m", None, "layers", 3, 4.0, 4.0, 4.0, 4.0, (4.0,) * 3, blocks)
    heads = [Measurement(10 + i, "m", c, "head", 3, 0.0, 0.0, 0.0, 0.0, (0.0,) * 3) for i, c in enumerate("abcd")]
    anchor = Measurement(20, "m", "a", "anchor", 3, 0.8, 0.8, 0.8, 0.8, (0.8,) * 3)  # 0.8x the profile's 1.0
    estimator = EmpiricalEstimator(Table([full, anchor, *heads]))
    cuts = list("abcd")
    a = estimator.estimate("m", cuts, "a", "median")
    assert a.estimated_ms == 0.8 and "measured end to end" in a.evidence
    b = estimator.estimate("m", cuts, "b", "median")  # share 0.5, between 0.8 at 0.25 and 1 at 1.0
    assert b.estimated_ms == pytest.approx(2.0 * (0.8 + (1.0 - 0.8) * (0.5 - 0.25) / 0.75))
    assert "corrected" in b.evidence and 20 in b.rows


def test_profile_passes_on_the_agents_warnings(tmp_path):
    """More threads than the board has cores: the agent warns, and profile says so (it used to keep it)."""
    threads = (os.cpu_count() or 1) + 1
    argv = ["profile", "--model", "resnet18", "--cuts", "layer1.0", "--mode", "e2e", "--threads", str(threads)]
    out = host(*argv, *SMALL, *FAST, "--json", db=tmp_path / "t.sqlite")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert any(f"threads={threads} is more than this board's" in w for w in data["other_warnings"])


def _open_table(path: str, barrier) -> None:  # noqa: ANN001 - a multiprocessing.Barrier
    from pathlib import Path

    barrier.wait()
    LatencyDB(Path(path)).close()


def test_processes_creating_one_new_table_at_once_all_open_it(tmp_path):
    """Two profiles started together on a new table: each process must find the schema made, not make it
    twice ("table targets already exists") nor give up on SQLite's instant "locked" while switching to WAL."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    failed = 0
    for i in range(3):  # without the fix: 109 of 160 such opens failed in 40 rounds of 4
        path = str(tmp_path / f"t{i}.sqlite")
        barrier = context.Barrier(4)
        procs = [context.Process(target=_open_table, args=(path, barrier)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        failed += sum(p.exitcode != 0 for p in procs)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert failed == 0
