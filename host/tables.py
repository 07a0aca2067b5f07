"""Latency tables in SQLite: every measurement a target ever made, one committed row at a time.

One file (default under the user's data dir, `--db PATH`) holds all targets. The schema
is versioned in PRAGMA user_version with forward migrations; WAL mode; each row is its
own transaction, so a crash loses at most the measurement in flight. A target's
identity (board model, CPU, runtime and version, threads) is stored with every row, and
readers only mix rows of one identity.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from netcut.estimate import Measurement, pool_rounds
from netcut.vocabulary import FULL, KERNEL_SUITE_PREFIX, cut_label, parse_cut_label

from .errors import ConfigError
from .records import AgentResult, TargetIdentity, doubts  # noqa: F401  (TargetIdentity: rows are keyed by it)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4
MIGRATIONS = {
    1: """
    CREATE TABLE targets (
        identity TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT NOT NULL,          -- JSON: board, cpu, runtime, version, threads
        first_seen REAL NOT NULL
    );
    CREATE TABLE measurements (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        identity TEXT NOT NULL REFERENCES targets(identity),
        model TEXT NOT NULL,                -- as the user named it
        arch TEXT NOT NULL,                 -- architecture key: weights do not change latency
        input_size INTEGER NOT NULL,
        batch INTEGER NOT NULL,
        cut TEXT NOT NULL,                  -- 'full' = the full network ('' before schema 3)
        granularity TEXT NOT NULL,
        format TEXT NOT NULL,
        runtime TEXT NOT NULL,
        runtime_version TEXT NOT NULL,
        threads INTEGER NOT NULL,
        mode TEXT NOT NULL,                 -- e2e, layers (full network + per-block profile), head, anchor
        classes INTEGER NOT NULL,
        timing TEXT NOT NULL,               -- JSON: the timing config the agent used
        n INTEGER NOT NULL,
        median_ms REAL NOT NULL, mean_ms REAL NOT NULL, p90_ms REAL NOT NULL, p95_ms REAL NOT NULL,
        p99_ms REAL NOT NULL, min_ms REAL NOT NULL, max_ms REAL NOT NULL, std_ms REAL NOT NULL, cv REAL NOT NULL,
        samples TEXT NOT NULL,              -- JSON list of ms
        blocks TEXT NOT NULL,               -- JSON {block: ms} (layers mode), {} otherwise
        layers TEXT NOT NULL,               -- JSON [[node, op, block, ms], ...] (layers mode)
        board TEXT NOT NULL,                -- JSON: board description, state at start and end
        throttled INTEGER NOT NULL,
        clock_dropped INTEGER NOT NULL,
        model_id TEXT NOT NULL,             -- sha256 of the file measured
        agent_version TEXT NOT NULL,
        measured_at REAL NOT NULL,
        UNIQUE (identity, arch, input_size, batch, cut, granularity, format, threads, mode, classes)
    );
    CREATE INDEX measurements_lookup ON measurements (target, arch, input_size, batch, format, threads);
    CREATE TABLE cost_models (
        identity TEXT NOT NULL,
        row_key TEXT NOT NULL,              -- JSON RowKey
        fitted_at REAL NOT NULL,
        model TEXT NOT NULL,                -- JSON netcut.estimate.CostModel (never a pickle)
        PRIMARY KEY (identity, row_key)
    );
    """,
    # A measurement may be taken in rounds (windows spread over the run, so a drift of the board averages
    # out): one row per round. SQLite cannot change a UNIQUE constraint in place: rebuild the table.
    2: """
    CREATE TABLE measurements_v2 (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        identity TEXT NOT NULL REFERENCES targets(identity),
        model TEXT NOT NULL,
        arch TEXT NOT NULL,
        input_size INTEGER NOT NULL,
        batch INTEGER NOT NULL,
        cut TEXT NOT NULL,
        granularity TEXT NOT NULL,
        format TEXT NOT NULL,
        runtime TEXT NOT NULL,
        runtime_version TEXT NOT NULL,
        threads INTEGER NOT NULL,
        mode TEXT NOT NULL,
        classes INTEGER NOT NULL,
        timing TEXT NOT NULL,
        n INTEGER NOT NULL,
        median_ms REAL NOT NULL, mean_ms REAL NOT NULL, p90_ms REAL NOT NULL, p95_ms REAL NOT NULL,
        p99_ms REAL NOT NULL, min_ms REAL NOT NULL, max_ms REAL NOT NULL, std_ms REAL NOT NULL, cv REAL NOT NULL,
        samples TEXT NOT NULL,
        blocks TEXT NOT NULL,
        layers TEXT NOT NULL,
        board TEXT NOT NULL,
        throttled INTEGER NOT NULL,
        clock_dropped INTEGER NOT NULL,
        model_id TEXT NOT NULL,
        agent_version TEXT NOT NULL,
        measured_at REAL NOT NULL,
        round INTEGER NOT NULL DEFAULT 0,   -- which window of a measurement taken in rounds (0 = the first)
        UNIQUE (identity, arch, input_size, batch, cut, granularity, format, threads, mode, classes, round)
    );
    INSERT INTO measurements_v2 SELECT *, 0 FROM measurements;
    DROP TABLE measurements;
    ALTER TABLE measurements_v2 RENAME TO measurements;
    CREATE INDEX measurements_lookup ON measurements (target, arch, input_size, batch, format, threads);
    """,
    # The full network is spelled 'full' on disk, as on the command line (it was ''); a stored cost model
    # records the rows it was fitted on, so it is read back while they have not changed.
    3: """
    UPDATE measurements SET cut = 'full' WHERE cut = '';
    DELETE FROM cost_models;
    ALTER TABLE cost_models ADD COLUMN fitted_rows TEXT NOT NULL DEFAULT '';
    """,
    # Precision is part of a row's key: an int8 model of a cut is another measurement than its float one.
    4: """
    CREATE TABLE measurements_v4 (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        identity TEXT NOT NULL REFERENCES targets(identity),
        model TEXT NOT NULL,
        arch TEXT NOT NULL,
        input_size INTEGER NOT NULL,
        batch INTEGER NOT NULL,
        cut TEXT NOT NULL,
        granularity TEXT NOT NULL,
        format TEXT NOT NULL,
        runtime TEXT NOT NULL,
        runtime_version TEXT NOT NULL,
        threads INTEGER NOT NULL,
        mode TEXT NOT NULL,
        classes INTEGER NOT NULL,
        timing TEXT NOT NULL,
        n INTEGER NOT NULL,
        median_ms REAL NOT NULL, mean_ms REAL NOT NULL, p90_ms REAL NOT NULL, p95_ms REAL NOT NULL,
        p99_ms REAL NOT NULL, min_ms REAL NOT NULL, max_ms REAL NOT NULL, std_ms REAL NOT NULL, cv REAL NOT NULL,
        samples TEXT NOT NULL,
        blocks TEXT NOT NULL,
        layers TEXT NOT NULL,
        board TEXT NOT NULL,
        throttled INTEGER NOT NULL,
        clock_dropped INTEGER NOT NULL,
        model_id TEXT NOT NULL,
        agent_version TEXT NOT NULL,
        measured_at REAL NOT NULL,
        round INTEGER NOT NULL DEFAULT 0,
        precision TEXT NOT NULL DEFAULT 'fp32',  -- fp32, int8 (netcut.quantize.PRECISIONS)
        UNIQUE (identity, arch, input_size, batch, cut, granularity, format, precision, threads, mode, classes, round)
    );
    INSERT INTO measurements_v4 SELECT *, 'fp32' FROM measurements;
    DROP TABLE measurements;
    ALTER TABLE measurements_v4 RENAME TO measurements;
    CREATE INDEX measurements_lookup ON measurements (target, arch, input_size, batch, format, precision, threads);
    DELETE FROM cost_models;
    """,
}
STALE_DAYS = 30
# The columns that name one measurement (all its rounds).
JOB_KEY = (
    "identity=? AND arch=? AND input_size=? AND batch=? AND cut=? AND granularity=? AND format=? AND precision=? "
    "AND threads=? AND mode=? AND classes=?"
)
# The columns of a row key (all but classes, which only head and e2e rows depend on).
KEY_COLUMNS = "input_size=? AND batch=? AND format=? AND precision=? AND runtime=? AND threads=? AND granularity=?"


def _key_params(key: "RowKey") -> tuple:
    return (key.input_size, key.batch, key.format, key.precision, key.runtime, key.threads, key.granularity)


class TableError(ConfigError):
    """The database cannot be used as it is (newer schema, corrupt, full disk)."""

    option = "db"


class RowExists(TableError):
    """The row is in the table already (another run measured it meanwhile)."""


@dataclass(frozen=True)
class RowKey:
    """The options that identify rows besides the target and the model."""

    input_size: int = 224
    batch: int = 1
    format: str = "onnx"
    runtime: str = "onnxruntime"
    threads: int = 1
    granularity: str = "block"
    classes: int = 10
    precision: str = "fp32"  # fp32, int8 or fp16: the model measured is quantized or converted


@dataclass(frozen=True)
class Row:
    """One measurement (or one round of it) of one network's cut on one target, as stored."""

    target: str
    identity: str
    model: str
    key: RowKey
    cut: str | None
    mode: str
    result: AgentResult
    blocks: dict = field(default_factory=dict)
    measured_at: float = 0.0
    round: int = 0  # which window of a measurement taken in rounds
    board: str | None = None  # fleets: the board that measured it
    superseded: dict | None = None  # the first run, when the agent's doubts had it measured again


def _friendly(exc: sqlite3.Error, path: Path) -> TableError:
    text = str(exc)
    if "disk is full" in text or "disk I/O" in text:
        return TableError(f"cannot write to {path}: {text}; free some disk space (rows committed so far are kept)")
    if "not a database" in text or "malformed" in text:
        return TableError(f"{path} is not a valid NetCut database ({text}); move it aside or use another table file")
    if "locked" in text:
        return TableError(f"{path} is locked by another process; wait for it or use another table file")
    return TableError(f"database error in {path}: {text}")


class LatencyDB:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self._wal()
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as exc:
            raise _friendly(exc, self.path) from None

    def _wal(self) -> None:
        """Switch to write-ahead logging; SQLite answers "locked" at once, without waiting, while another
        process creates the same new file, so wait here (as long as the connection's timeout)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "LatencyDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise TableError(
                f"{self.path} was written by a newer NetCut (schema {version}, this one reads up to "
                f"{SCHEMA_VERSION}); upgrade netcut, or use another table file"
            )
        for target_version in range(version + 1, SCHEMA_VERSION + 1):
            with self.transaction():
                # Read again under the write lock: another process opening the same new table at the same
                # moment may have migrated it meanwhile ("table targets already exists" otherwise).
                if self.conn.execute("PRAGMA user_version").fetchone()[0] >= target_version:
                    continue
                for statement in MIGRATIONS[target_version].split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {target_version}")
            log.info("migrated %s to schema %d", self.path, target_version)

    def transaction(self):  # noqa: ANN201 - a context manager of one BEGIN ... COMMIT
        db = self

        class _Tx:
            def __enter__(self):
                db.conn.execute("BEGIN IMMEDIATE")

            def __exit__(self, kind, exc, tb):  # noqa: ANN001
                if kind is None:
                    db.conn.execute("COMMIT")
                elif db.conn.in_transaction:  # SQLite rolls back by itself on some errors (disk full)
                    db.conn.execute("ROLLBACK")

        return _Tx()

    # ------------------------------------------------------------ writes

    def add_target(self, target: TargetIdentity) -> None:
        try:
            self.conn.execute(
                "INSERT OR IGNORE INTO targets VALUES (?, ?, ?, ?)",
                (target.key, target.name, json.dumps(target.description, sort_keys=True), time.time()),
            )
        except sqlite3.Error as exc:
            raise _friendly(exc, self.path) from None

    def add(self, row: Row, replace: bool = False, rounds: int | None = None) -> int:
        """Store one measurement (or one round of it) in its own transaction; returns its id.

        replace: measured again, so the row of the same round goes, and with `rounds` (how many the
        measurement now has) the rounds beyond those too."""
        r, st = row.result, row.result.stats
        state = {
            "board": asdict(r.board),
            "fleet_board": row.board,
            "state_start": asdict(r.state_start),
            "state_end": asdict(r.state_end),
            "warnings": list(r.warnings),
            "interference": asdict(r.interference),
            # Measured again because the agent doubted the first run: what that run gave, kept beside this one.
            "superseded": row.superseded,
        }
        values = (
            row.target,
            row.identity,
            row.model,
            row.model,
            row.key.input_size,
            row.key.batch,
            cut_label(row.cut),
            row.key.granularity,
            row.key.format,
            row.key.precision,
            row.key.runtime,
            r.runtime_version,
            row.key.threads,
            row.mode,
            row.key.classes,
            json.dumps(r.timing.given()),
            st.n,
            st.median_ms,
            st.mean_ms,
            st.p90_ms,
            st.p95_ms,
            st.p99_ms,
            st.min_ms,
            st.max_ms,
            st.std_ms,
            st.cv,
            json.dumps(list(r.samples_ms)),
            json.dumps(row.blocks),
            json.dumps([[x.node, x.op_type, x.block, x.time_ms, x.raw_ms] for x in r.layers]),
            json.dumps(state),
            int(r.throttled),
            int(r.clock_dropped),
            r.model_id,
            r.agent_version,
            row.measured_at or time.time(),
            row.round,
        )
        try:
            with self.transaction():
                if replace:
                    which, extra = (
                        ("(round=? OR round>=?)", (row.round, rounds))
                        if rounds is not None
                        else ("round=?", (row.round,))
                    )
                    self.conn.execute(
                        f"DELETE FROM measurements WHERE {JOB_KEY} AND {which}",
                        self._job_params(row.identity, row.model, row.key, row.cut, row.mode) + extra,
                    )
                cursor = self.conn.execute(
                    "INSERT INTO measurements (target, identity, model, arch, input_size, "
                    "batch, cut, granularity, format, precision, runtime, runtime_version, threads, mode, "
                    "classes, timing, n, median_ms, mean_ms, p90_ms, p95_ms, p99_ms, min_ms, "
                    "max_ms, std_ms, cv, samples, blocks, layers, board, throttled, "
                    "clock_dropped, model_id, agent_version, measured_at, round) VALUES "
                    f"({', '.join('?' * len(values))})",
                    values,
                )
            return cursor.lastrowid
        except sqlite3.IntegrityError:
            raise RowExists("this measurement is already in the table; measure it again to replace it") from None
        except sqlite3.Error as exc:
            raise _friendly(exc, self.path) from None

    # ------------------------------------------------------------ reads

    def _select(self, where: str, params: Iterable) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(f"SELECT * FROM measurements WHERE {where} ORDER BY id", tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise _friendly(exc, self.path) from None

    def _scalar(self, sql: str, params: Iterable):
        try:
            return self.conn.execute(sql, tuple(params)).fetchone()[0]
        except sqlite3.Error as exc:
            raise _friendly(exc, self.path) from None

    @staticmethod
    def _job_params(identity: str, arch: str, key: RowKey, cut: str | None, mode: str) -> tuple:
        return (
            identity,
            arch,
            key.input_size,
            key.batch,
            cut_label(cut),
            key.granularity,
            key.format,
            key.precision,
            key.threads,
            mode,
            key.classes,
        )

    def rounds(self, identity: str, arch: str, key: RowKey, cut: str | None, mode: str) -> set[int]:
        """The rounds of this measurement already in the table (empty: never measured)."""
        try:
            return {
                r[0]
                for r in self.conn.execute(
                    f"SELECT round FROM measurements WHERE {JOB_KEY}", self._job_params(identity, arch, key, cut, mode)
                )
            }
        except sqlite3.Error as exc:
            raise _friendly(exc, self.path) from None

    def has_steady(self, identity: str, arch: str, key: RowKey, cut: str | None, mode: str) -> bool:
        """Whether a row of this measurement stands without the agent's doubts (busy, noisy, throttled)."""
        return any(
            not doubts(json.loads(r["board"]).get("warnings", []), r["median_ms"], r["p99_ms"])
            for r in self._select(JOB_KEY, self._job_params(identity, arch, key, cut, mode))
        )

    def count(self, identity: str, older_than: float | None = None) -> int:
        return self._scalar(
            "SELECT COUNT(*) FROM measurements WHERE identity=? AND measured_at < ?",
            (identity, older_than if older_than is not None else float("inf")),
        )

    def archs(self, identity: str, key: RowKey, suite: bool = False) -> list[str]:
        """The networks measured under this identity and row key (suite: the kernel suite's models instead)."""
        try:
            rows = self.conn.execute(
                f"SELECT DISTINCT arch FROM measurements WHERE identity=? AND {KEY_COLUMNS} ORDER BY arch",
                (identity, *_key_params(key)),
            ).fetchall()
        except sqlite3.Error as exc:
            raise _friendly(exc, self.path) from None
        return [r[0] for r in rows if r[0].startswith(KERNEL_SUITE_PREFIX) == suite]

    def rows(
        self, target: str | None = None, identity: str | None = None, arch: str | None = None, key: RowKey | None = None
    ) -> list[sqlite3.Row]:
        clauses, params = ["1=1"], []
        for column, value in (("target", target), ("identity", identity), ("arch", arch)):
            if value is not None:
                clauses.append(f"{column}=?")
                params.append(value)
        if key is not None:
            clauses.append(KEY_COLUMNS)
            params += _key_params(key)
        return self._select(" AND ".join(clauses), params)

    def targets(self) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM targets ORDER BY first_seen").fetchall()

    def identities_of(self, name: str) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM targets WHERE name=? ORDER BY first_seen", (name,)).fetchall()

    def fitted_rows(self, identity: str, key: RowKey) -> str:
        """A fingerprint of the rows a cost model of this identity and row key is fitted on: it changes when
        a row is added, replaced or removed."""
        count, last = self.conn.execute(
            f"SELECT COUNT(*), MAX(id) FROM measurements WHERE identity=? AND {KEY_COLUMNS}",
            (identity, *_key_params(key)),
        ).fetchone()
        return f"{count}:{last}:{key.classes}"

    @staticmethod
    def _model_key(key: RowKey, estimator: str) -> str:
        """The network-level cost model keeps its old key; the per-kernel model is stored beside it."""
        return json.dumps(
            {**vars(key), **({"estimator": estimator} if estimator != "analytical" else {})}, sort_keys=True
        )

    def save_cost_model(
        self, identity: str, key: RowKey, model_json: str, fitted_rows: str, estimator: str = "analytical"
    ) -> None:
        try:
            self.conn.execute(
                "INSERT OR REPLACE INTO cost_models VALUES (?, ?, ?, ?, ?)",
                (identity, self._model_key(key, estimator), time.time(), model_json, fitted_rows),
            )
        except sqlite3.Error as exc:
            raise _friendly(exc, self.path) from None

    def cost_model(
        self, identity: str, key: RowKey, fitted_rows: str | None, estimator: str = "analytical"
    ) -> str | None:
        """The stored model's JSON if it was fitted on exactly these rows (None: whatever it was fitted on)."""
        sql = "SELECT model FROM cost_models WHERE identity=? AND row_key=?"
        params = [identity, self._model_key(key, estimator)]
        if fitted_rows is not None:
            sql, params = sql + " AND fitted_rows=?", [*params, fitted_rows]
        row = self.conn.execute(sql + " ORDER BY fitted_at DESC", params).fetchone()
        return row[0] if row else None

    def stored_models(self, identity: str, estimator: str) -> list[tuple[dict, str]]:
        """Every model of this estimator stored for an identity, newest first: (row key fields, JSON)."""
        rows = self.conn.execute(
            "SELECT row_key, model FROM cost_models WHERE identity=? ORDER BY fitted_at DESC", (identity,)
        ).fetchall()
        out = []
        for row_key, model in rows:
            fields = json.loads(row_key)
            if fields.pop("estimator", "analytical") == estimator:
                out.append((fields, model))
        return out

    def integrity(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    # ------------------------------------------------------------ sharing

    def export_rows(self, target: str | None = None) -> dict:
        rows = self.rows(target=target)
        identities = {r["identity"] for r in rows}
        targets = [dict(t) for t in self.targets() if t["identity"] in identities]
        return {
            "netcut_table": SCHEMA_VERSION,
            "targets": targets,
            "measurements": [{k: r[k] for k in r.keys() if k != "id"} for r in rows],
        }

    def import_rows(self, data: dict) -> tuple[int, int]:
        """Add rows from an export; rows already present (same key) are skipped. Returns (added, skipped)."""
        if not isinstance(data, dict) or "measurements" not in data or "targets" not in data:
            raise TableError("not a NetCut table export (expected keys: netcut_table, targets, measurements)")
        if data.get("netcut_table", 0) > SCHEMA_VERSION:
            raise TableError(f"the export comes from a newer NetCut (table format {data['netcut_table']}); upgrade")
        old_spelling = data.get("netcut_table", 0) < 3  # the full network was cut ''

        added = skipped = 0
        try:
            with self.transaction():
                for t in data["targets"]:
                    self.conn.execute(
                        "INSERT OR IGNORE INTO targets VALUES (?, ?, ?, ?)",
                        (t["identity"], t["name"], t["description"], t["first_seen"]),
                    )
                for m in data["measurements"]:
                    if old_spelling and m.get("cut") == "":
                        m = {**m, "cut": FULL}
                    columns = list(m)
                    cursor = self.conn.execute(
                        f"INSERT OR IGNORE INTO measurements ({', '.join(columns)}) VALUES "
                        f"({', '.join('?' * len(columns))})",
                        [m[c] for c in columns],
                    )
                    added += cursor.rowcount
                    skipped += 1 - cursor.rowcount
        except (sqlite3.Error, KeyError, TypeError) as exc:
            raise TableError(f"cannot import: {exc}; nothing was imported") from None
        return added, skipped


def to_measurement(r: sqlite3.Row) -> Measurement:
    return Measurement(
        r["id"],
        r["arch"],
        parse_cut_label(r["cut"]),
        r["mode"],
        r["n"],
        r["median_ms"],
        r["p90_ms"],
        r["p95_ms"],
        r["p99_ms"],
        tuple(json.loads(r["samples"])),
        json.loads(r["blocks"]),
    )


def fresh_measurements(
    db: LatencyDB, identity: str, key: RowKey, row_ids: Iterable[int] | None = None, mode: str = "e2e"
) -> dict[tuple, Measurement]:
    """The `mode` rows among those a run just measured (row_ids; None: all of them), by (arch, cut), with
    the rounds of each pooled."""
    ids = None if row_ids is None else set(row_ids)
    rows = [
        to_measurement(r)
        for r in db.rows(identity=identity, key=key)
        if r["mode"] == mode and (ids is None or r["id"] in ids)
    ]
    return {(m.model, m.cut): m for m in pool_rounds(rows)}


class TableView:
    """netcut.estimate.LatencyTable over the rows of one identity and row key.

    Rows are read once per model for the view's lifetime (an estimator asks once per cut).
    `exclude_mode="e2e"` hides end-to-end rows, to score the profile-based estimate against them.
    """

    def __init__(self, db: LatencyDB, identity: str, key: RowKey, exclude_mode: str | None = None):
        self.db, self.identity, self.key, self.exclude_mode = db, identity, key, exclude_mode
        self._cache: dict[str, list[Measurement]] = {}

    def measurements(self, model: str) -> list[Measurement]:
        if model not in self._cache:
            rows = self.db.rows(identity=self.identity, arch=model, key=self.key)
            # Head and e2e rows depend on the head's class count; layers rows do not.
            self._cache[model] = pool_rounds(
                [
                    to_measurement(r)
                    for r in rows
                    if r["mode"] != self.exclude_mode and (r["mode"] == "layers" or r["classes"] == self.key.classes)
                ]
            )
        return self._cache[model]
