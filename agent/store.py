"""The agent's model store: content-addressed by sha256, atomic, size-capped, LRU-evicted.

Layout under the store directory:
    models/<sha256>.<onnx|tflite>   the model, written once and never modified
    models/<sha256>.json            its record (format, size, label, stored, last used)
    tmp/                            uploads in flight; emptied at start-up

A model id is a sha256 in lowercase hex and nothing else, so no client-supplied string
ever becomes a path. An upload is written to tmp/, verified (size, hash, format) and
renamed into models/ in one step: a broken upload never leaves a partial model.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from .errors import InvalidArgument, NotFound, ResourceExhausted

log = logging.getLogger(__name__)

MODEL_ID = re.compile(r"[0-9a-f]{64}")  # used with fullmatch: no trailing newline slips through
FORMATS = ("onnx", "tflite")
DEFAULT_MAX_MODEL_BYTES = 256 * 1024 * 1024
DEFAULT_CAP_BYTES = 4 * 1024 * 1024 * 1024


@dataclass
class ModelInfo:
    model_id: str
    size_bytes: int
    format: str
    label: str
    stored_unix: float
    last_used_unix: float


def check_model_id(model_id: str) -> str:
    if not isinstance(model_id, str) or not MODEL_ID.fullmatch(model_id):
        raise InvalidArgument(
            f"model id {model_id[:80]!r} is not a sha256 in lowercase hex (64 characters); "
            "ids are the sha256 of the model file"
        )
    return model_id


def sniff_format(head: bytes) -> str | None:
    if head[4:8] == b"TFL3":
        return "tflite"
    return None


def _sparse(sparse) -> Iterator:  # noqa: ANN001 - an onnx.SparseTensorProto
    yield sparse.values
    yield sparse.indices


def _node_tensors(nodes) -> Iterator:  # noqa: ANN001 - onnx.NodeProto items
    """Every tensor the nodes' attributes hold: dense and sparse, single and repeated, and those of the
    subgraphs of control flow (If, Loop, Scan), recursively."""
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield from _sparse(attr.sparse_tensor)
            for sparse in attr.sparse_tensors:
                yield from _sparse(sparse)
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g)
            for g in attr.graphs:
                yield from _graph_tensors(g)


def _graph_tensors(graph) -> Iterator:  # noqa: ANN001 - an onnx.GraphProto
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from _sparse(sparse)
    yield from _node_tensors(graph.node)


def model_tensors(model) -> Iterator:  # noqa: ANN001 - an onnx.ModelProto
    """Every tensor anywhere in a model: the graph's, its nodes' and subgraphs', and its functions' bodies."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        yield from _node_tensors(function.node)


class StoreInUse(RuntimeError):
    """Another agent holds this store (two agents on one store delete each other's models)."""


def check_onnx(path: Path, store_dir: Path) -> None:
    """Refuse files that are not ONNX, and ONNX models that point at external data."""
    try:
        import onnx
    except ImportError:  # validation then happens when onnxruntime loads the model
        return
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:
        raise InvalidArgument(
            f"the upload is not a valid ONNX model ({type(exc).__name__}: "
            f"{str(exc)[:200]}); export it again with netcut-host export"
        ) from None
    if not model.graph.node:
        raise InvalidArgument("the upload parses as ONNX but holds no graph nodes; is it really an ONNX model?")
    for tensor in model_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL and not tensor.external_data:
            continue
        # Any external data is refused. The message names the tensor and where it points (strings the sender
        # chose, cut short), never the content of any file.
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        inside = (store_dir / location).resolve().is_relative_to(store_dir.resolve())
        where = "is not part of the upload" if inside else "points outside the store"
        raise InvalidArgument(
            f"tensor {tensor.name[:80]!r} keeps its data in an external file {location[:80]!r} that {where}; the "
            "agent accepts only models whose weights are inside the file "
            "(onnx.save_model(model, path, save_as_external_data=False))"
        )


class ModelStore:
    def __init__(self, root: Path, max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES, cap_bytes: int = DEFAULT_CAP_BYTES):
        self.root = Path(root)
        self.models_dir = self.root / "models"
        self.tmp_dir = self.root / "tmp"
        self.max_model_bytes = max_model_bytes
        self.cap_bytes = cap_bytes
        self._lock = threading.RLock()
        self._pins: dict[str, int] = {}
        self._reserved = 0  # bytes of uploads in flight: they count against the cap too
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._take_lock()
        for leftover in self.tmp_dir.iterdir():  # uploads cut off by a crash or restart
            leftover.unlink(missing_ok=True)
        self._index = self._load_index()
        self._remove_strays()

    def _take_lock(self):  # noqa: ANN202 - the open lock file, held for the store's life
        """One agent per store: an exclusive lock on store/agent.lock, released when the process ends."""
        import fcntl

        path = self.root / "agent.lock"
        f = open(path, "a+")  # noqa: SIM115 - kept open: the lock lives as long as the file does
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise StoreInUse(
                f"the store {self.root} is in use by agent process {holder}; stop that agent, or give "
                "this one a store of its own (--store DIR)"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        return f

    def close(self) -> None:
        self._lock_file.close()

    def _remove_strays(self) -> None:
        """Files a crash or a full disk left in models/ that no record describes: counted nowhere, so gone."""
        known = {self._path(i).name for i in self._index.values()} | {f"{k}.json" for k in self._index}
        for path in self.models_dir.iterdir():
            if path.name not in known and path.is_file():
                log.info("removing stray store file %s", path.name)
                path.unlink(missing_ok=True)

    # ------------------------------------------------------------ index

    def _load_index(self) -> dict[str, ModelInfo]:
        index = {}
        for meta in self.models_dir.glob("*.json"):
            try:
                info = ModelInfo(**json.loads(meta.read_text()))
            except (ValueError, TypeError) as exc:
                log.warning("ignoring unreadable store record %s: %s", meta, exc)
                continue
            if MODEL_ID.fullmatch(info.model_id) and self._path(info).is_file():
                index[info.model_id] = info
        return index

    def _path(self, info: ModelInfo) -> Path:
        return self.models_dir / f"{info.model_id}.{info.format}"

    def _write_meta(self, info: ModelInfo) -> None:
        meta = self.models_dir / f"{info.model_id}.json"
        tmp = meta.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(info)))
        os.replace(tmp, meta)

    @property
    def bytes_used(self) -> int:
        with self._lock:
            return sum(i.size_bytes for i in self._index.values())

    def list(self) -> list[ModelInfo]:
        with self._lock:
            return sorted(self._index.values(), key=lambda i: i.last_used_unix, reverse=True)

    def get(self, model_id: str) -> ModelInfo | None:
        check_model_id(model_id)
        with self._lock:
            return self._index.get(model_id)

    def delete(self, model_id: str) -> bool:
        check_model_id(model_id)
        with self._lock:
            info = self._index.pop(model_id, None)
            if info is None:
                return False
            self._path(info).unlink(missing_ok=True)
            (self.models_dir / f"{model_id}.json").unlink(missing_ok=True)
            return True

    @contextlib.contextmanager
    def use(self, model_id: str) -> Iterator[tuple[Path, ModelInfo]]:
        """The model's path, pinned against eviction while in use; marks it recently used."""
        check_model_id(model_id)
        with self._lock:
            info = self._index.get(model_id)
            if info is None:
                raise NotFound(
                    f"model {model_id[:12]}… is not in this agent's store; upload it first "
                    "(netcut-host bench uploads automatically)"
                )
            info.last_used_unix = time.time()
            self._write_meta(info)
            self._pins[model_id] = self._pins.get(model_id, 0) + 1
        try:
            yield self._path(info), info
        finally:
            with self._lock:
                self._pins[model_id] -= 1
                if not self._pins[model_id]:
                    del self._pins[model_id]

    # ------------------------------------------------------------ upload

    def upload(self, sha256: str, size_bytes: int, fmt: str, label: str, chunks: Iterator[bytes]) -> ModelInfo:
        """Store a model from a stream of chunks, or raise and leave nothing behind."""
        check_model_id(sha256)
        if fmt not in FORMATS:
            raise InvalidArgument(f"unknown model format {fmt!r}; use one of: {', '.join(FORMATS)}")
        if size_bytes <= 0:
            raise InvalidArgument("the upload header must give the model's size in bytes")
        if size_bytes > self.max_model_bytes:
            raise ResourceExhausted(
                f"the model is {size_bytes / 1e6:.1f} MB, over this agent's limit of "
                f"{self.max_model_bytes / 1e6:.0f} MB; restart the agent with a larger --max-model-mb"
            )
        if size_bytes > self.cap_bytes:
            raise ResourceExhausted(
                f"the model ({size_bytes / 1e6:.1f} MB) is larger than the whole store "
                f"({self.cap_bytes / 1e6:.0f} MB); raise --store-cap-mb"
            )
        with self._lock:  # room for it now, counting the uploads in flight
            self._evict_for(size_bytes + self._reserved, keep=sha256)
            self._reserved += size_bytes
        try:
            return self._receive(sha256, size_bytes, fmt, label, chunks)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ResourceExhausted(
                    "the board's disk is full; nothing was stored: free some space, or lower --store-cap-mb"
                ) from None
            raise
        finally:
            with self._lock:
                self._reserved -= size_bytes

    def _receive(self, sha256: str, size_bytes: int, fmt: str, label: str, chunks: Iterator[bytes]) -> ModelInfo:
        # Recreated if someone removed the store under a running agent.
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp_dir, suffix=".part")
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            received = 0
            head = b""
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    received += len(chunk)
                    if received > size_bytes:
                        raise InvalidArgument(f"the upload sent more than the {size_bytes} bytes its header announced")
                    if len(head) < 8:
                        head += chunk[: 8 - len(head)]
                    digest.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            if received != size_bytes:
                raise InvalidArgument(f"the upload ended after {received} of {size_bytes} bytes; send it again")
            if digest.hexdigest() != sha256:
                raise InvalidArgument(
                    f"the content's sha256 is {digest.hexdigest()[:12]}…, not the "
                    f"{sha256[:12]}… its header claims; the file changed or was corrupted in transit"
                )
            sniffed = sniff_format(head)
            if fmt == "tflite" and sniffed != "tflite":
                raise InvalidArgument(
                    "the upload is not a TFLite flatbuffer (no 'TFL3' identifier); "
                    "convert the model with netcut-host export --format tflite"
                )
            if fmt == "onnx":
                if sniffed == "tflite":
                    raise InvalidArgument("the upload is a TFLite model but was sent as ONNX; use --runtime litert")
                check_onnx(tmp, self.root / "models")
            now = time.time()
            info = ModelInfo(sha256, size_bytes, fmt, label[:200], now, now)
            with self._lock:
                if sha256 in self._index:  # verified content we already hold: keep the stored copy
                    return self._index[sha256]
                self._evict_for(self._reserved, keep=sha256)  # this upload's reservation included
                os.replace(tmp, self._path(info))
                try:
                    self._write_meta(info)
                except OSError:  # a model without its record would be counted nowhere: it goes too
                    self._path(info).unlink(missing_ok=True)
                    (self.models_dir / f"{sha256}.json.tmp").unlink(missing_ok=True)
                    raise
                self._index[sha256] = info
            log.info("stored model %s (%s, %.1f MB)", sha256[:12], fmt, size_bytes / 1e6)
            return info
        finally:
            tmp.unlink(missing_ok=True)

    def _evict_for(self, incoming: int, keep: str) -> None:
        used = sum(i.size_bytes for k, i in self._index.items() if k != keep)
        for info in sorted(self._index.values(), key=lambda i: i.last_used_unix):
            if used + incoming <= self.cap_bytes:
                return
            if info.model_id == keep or info.model_id in self._pins:
                continue
            log.info("evicting least recently used model %s (%.1f MB)", info.model_id[:12], info.size_bytes / 1e6)
            self.delete(info.model_id)
            used -= info.size_bytes
        if used + incoming > self.cap_bytes:
            raise ResourceExhausted(
                "the store is full of models in use and uploads in flight; try again when they end, or "
                "raise --store-cap-mb"
            )
