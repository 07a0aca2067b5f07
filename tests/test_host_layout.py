"""The host's shape: a library with a thin command line on top, fast help, and one exit code per outcome."""

from __future__ import annotations

import ast
import importlib
import json
import os
import pkgutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA, run_cli

ROOT = Path(__file__).resolve().parent.parent


def cli_modules() -> list[str]:
    import netcut_host.cli

    return ["netcut_host.cli"] + [f"netcut_host.cli.{m.name}" for m in pkgutil.iter_modules(netcut_host.cli.__path__)]


def imported_modules(path: Path, module: str) -> set[str]:
    """Absolute names of what a source file (the module named `module`) imports, relative imports resolved."""
    package = module.split(".") if path.stem == "__init__" else module.split(".")[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}
    return names


def test_every_cli_module_imports_and_nothing_outside_the_cli_imports_one():
    modules = cli_modules()
    assert {"netcut_host.cli.search", "netcut_host.cli.tables", "netcut_host.cli.fleet"} <= set(modules)
    for name in modules:
        importlib.import_module(name)
    offenders = []
    for folder, package in (
        ("host", "netcut_host"),
        ("netcut", "netcut"),
        ("agent", "netcut_agent"),
        ("bench", "bench"),
        ("scripts", "scripts"),
    ):
        for path in (ROOT / folder).glob("*.py"):  # host/cli/ itself is one level down
            used = imported_modules(path, package if path.stem == "__init__" else f"{package}.{path.stem}")
            if any(u == "netcut_host.cli" or u.startswith("netcut_host.cli.") for u in used):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
    # The scan sees what it should: the CLI's own package does import the library.
    assert "netcut_host.search" in imported_modules(ROOT / "host/cli/search.py", "netcut_host.cli.search")
    assert "netcut_host.cli.options" in imported_modules(ROOT / "host/cli/search.py", "netcut_host.cli.search")
    assert "netcut_host.errors" in imported_modules(ROOT / "host/cli/__init__.py", "netcut_host.cli")


@pytest.mark.parametrize("argv", [["--help"], ["search", "--help"], ["profile", "--help"], ["fleet", "--help"]])
def test_help_loads_neither_torch_nor_grpc(argv):
    code = (
        "import sys\nfrom netcut_host.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in ('torch', 'torchvision', 'grpc', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout, out.stdout[-300:]


def test_every_option_of_every_command_says_its_default_or_what_it_does():
    from netcut_host.cli import build_parser

    parser = build_parser()
    missing = []
    subparsers = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"][0]
    commands = dict(subparsers.choices)
    fleet = commands.pop("fleet")
    commands.update(
        {
            f"fleet {k}": v
            for k, v in [a for a in fleet._actions if a.__class__.__name__ == "_SubParsersAction"][0].choices.items()
        }
    )
    for name, sub in commands.items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help" and not action.help:
                missing.append(f"{name} {action.option_strings[0]}")
    assert missing == []
    # One spelling: --models everywhere a network list is given, --model kept as its alias.
    for name in ("search", "profile", "estimate", "validate", "table"):
        flags = {s for a in commands[name]._actions for s in a.option_strings}
        assert {"--models", "--model"} <= flags, name


def test_exit_0_ok_and_2_bad_input(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(DATA)}
    ok = run_cli("netcut-host", "cuts", "custom_models:tiny", "--input-size", "16", env=env)
    assert ok.returncode == 0, ok.stderr
    bad = run_cli(
        "netcut-host",
        "search",
        "--policy",
        "greedy",
        "--db",
        str(tmp_path / "t.sqlite"),
        "--out",
        str(tmp_path / "o"),
        env=env,
    )
    assert bad.returncode == 2 and "--policy: unknown policy 'greedy'" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_exit_1_is_a_bug_and_keeps_its_traceback():
    out = run_cli("netcut-host", "cuts", "custom_models:broken", env={**os.environ, "PYTHONPATH": str(DATA)})
    assert out.returncode == 1
    assert "Traceback" in out.stderr and "KeyError: 'missing'" in out.stderr


def test_exit_4_when_the_target_fails_midway_and_the_rows_so_far_are_kept(agent_factory, tmp_path):
    # The agent takes models up to 1 MB: the shallowest TRN of resnet18 at 32 px passes, the full network
    # (45 MB) is refused as more than the board can hold, and the board is left out: nothing else can measure.
    a = agent_factory("--max-model-mb", "1")
    db = tmp_path / "t.sqlite"
    out = run_cli(
        "netcut-host",
        "profile",
        "--models",
        "resnet18",
        "--mode",
        "e2e",
        "--input-size",
        "32",
        "--target",
        "board",
        "--agent",
        a.address,
        "--db",
        str(db),
        "--min-seconds",
        "0.05",
        "--warmup-seconds",
        "0",
        "--min-runs",
        "5",
        timeout=300,
    )
    assert out.returncode == 4, out.stderr
    assert "every board of board failed" in out.stderr and "are stored" in out.stderr
    with sqlite3.connect(db) as conn:
        cuts = [r[0] for r in conn.execute("SELECT cut FROM measurements")]
    assert cuts == ["maxpool"]


def test_exit_4_for_an_unreachable_target_is_distinct_from_bad_input(tmp_path):
    out = run_cli("netcut-host", "info", "--agent", "127.0.0.1:9", "--connect-timeout", "1.5", timeout=60)
    assert out.returncode == 4 and "cannot reach the agent at 127.0.0.1:9 within 1.5 s" in out.stderr
    # Talking to an agent needs neither torch nor a runtime here.
    code = (
        "import sys\nfrom netcut_host.cli import main\n"
        "rc = main(['info', '--agent', '127.0.0.1:9', '--connect-timeout', '0.2'])\n"
        "print('RC', rc, sorted(m for m in ('torch', 'onnxruntime') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "RC 4 []" in done.stdout, done.stdout + done.stderr


def insert_row(conn, model: str, cut: str) -> None:  # noqa: ANN001 - a sqlite3 connection
    """One e2e row of target 'abc' (pi4) as an older NetCut wrote it, straight into SQLite."""
    conn.execute("INSERT OR IGNORE INTO targets VALUES ('abc', 'pi4', '{}', 0)")
    conn.execute(
        "INSERT INTO measurements (target, identity, model, arch, input_size, batch, cut, granularity, format, "
        "runtime, runtime_version, threads, mode, classes, timing, n, median_ms, mean_ms, p90_ms, p95_ms, p99_ms, "
        "min_ms, max_ms, std_ms, cv, samples, blocks, layers, board, throttled, clock_dropped, model_id, "
        "agent_version, measured_at) VALUES ('pi4', 'abc', ?, ?, 32, 1, ?, 'block', 'onnx', 'onnxruntime', '1', "
        "1, 'e2e', 10, '{}', 2, 1.5, 1.5, 1.9, 1.9, 1.9, 1.0, 2.0, 0.5, 0.3, '[1.0, 2.0]', '{}', '[]', '{}', 0, 0, "
        "'x', '0', 0)",
        (model, model, cut),
    )


def test_the_full_network_is_spelled_full_on_disk_and_old_tables_migrate(tmp_path):
    from netcut_host.tables import MIGRATIONS, LatencyDB, RowKey

    path = tmp_path / "v2.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(MIGRATIONS[1] + ";" + MIGRATIONS[2] + "; PRAGMA user_version = 2;")
        insert_row(conn, "m", "")
    with LatencyDB(path) as db:
        assert [r["cut"] for r in db.rows()] == ["full"]
        assert db.rounds("abc", "m", RowKey(input_size=32), None, "e2e") == {0}
        exported = db.export_rows()
    # An export of an older table (cut '') imports with the new spelling.
    for m in exported["measurements"]:
        m["cut"] = ""
    exported["netcut_table"] = 2
    with LatencyDB(tmp_path / "new.sqlite") as db:
        assert db.import_rows(json.loads(json.dumps(exported))) == (1, 0)
        assert [r["cut"] for r in db.rows()] == ["full"]


def test_the_stored_cost_model_is_read_back_until_its_rows_change(tmp_path):
    from netcut.estimate import CostModel
    from netcut.features import FEATURES
    from netcut_host.estimation import fit
    from netcut_host.tables import LatencyDB, RowKey

    stored = CostModel(list(FEATURES), [1.0] * len(FEATURES), {"median": 1.0}, 0.1, 9, "abc", ["m"])
    with LatencyDB(tmp_path / "t.sqlite") as db:
        key = RowKey(input_size=32)
        db.save_cost_model("abc", key, stored.to_json(), db.fitted_rows("abc", key))
        assert fit(db, "abc", key) == stored  # the table has not changed: no refit
        insert_row(db.conn, "resnet18", "full")
        with pytest.raises(Exception, match="needs at least"):  # a new row: fitted again (one row is too few)
            fit(db, "abc", key)
        # int8 features mean other things (netcut.features.basis): a model stored before that is fitted again.
        int8 = RowKey(input_size=32, precision="int8")
        db.save_cost_model("abc", int8, stored.to_json(), db.fitted_rows("abc", int8))
        with pytest.raises(Exception, match="needs at least"):
            fit(db, "abc", int8)


def test_the_hosts_timing_defaults_are_the_agents():
    from netcut_agent.measure import TimingConfig
    from netcut_host.records import DEFAULT_TIMING

    agent = vars(TimingConfig())
    assert {k: agent[k] for k in DEFAULT_TIMING} == DEFAULT_TIMING
