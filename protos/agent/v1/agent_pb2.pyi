from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_FORMAT_UNSPECIFIED: _ClassVar[ModelFormat]
    MODEL_FORMAT_ONNX: _ClassVar[ModelFormat]
    MODEL_FORMAT_TFLITE: _ClassVar[ModelFormat]

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_INT8: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]
    DTYPE_INT64: _ClassVar[DType]
MODEL_FORMAT_UNSPECIFIED: ModelFormat
MODEL_FORMAT_ONNX: ModelFormat
MODEL_FORMAT_TFLITE: ModelFormat
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT16: DType
DTYPE_INT8: DType
DTYPE_UINT8: DType
DTYPE_INT32: DType
DTYPE_INT64: DType

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("agent_version", "protocol_version", "runtimes", "board", "state", "store", "busy", "queue_length")
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNTIMES_FIELD_NUMBER: _ClassVar[int]
    BOARD_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    QUEUE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    agent_version: str
    protocol_version: int
    runtimes: _containers.RepeatedCompositeFieldContainer[RuntimeInfo]
    board: BoardDescription
    state: BoardState
    store: StoreInfo
    busy: bool
    queue_length: int
    def __init__(self, agent_version: _Optional[str] = ..., protocol_version: _Optional[int] = ..., runtimes: _Optional[_Iterable[_Union[RuntimeInfo, _Mapping]]] = ..., board: _Optional[_Union[BoardDescription, _Mapping]] = ..., state: _Optional[_Union[BoardState, _Mapping]] = ..., store: _Optional[_Union[StoreInfo, _Mapping]] = ..., busy: _Optional[bool] = ..., queue_length: _Optional[int] = ...) -> None: ...

class RuntimeInfo(_message.Message):
    __slots__ = ("name", "available", "version", "execution_providers", "unavailable_reason", "layer_profile", "package")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    LAYER_PROFILE_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    available: bool
    version: str
    execution_providers: _containers.RepeatedScalarFieldContainer[str]
    unavailable_reason: str
    layer_profile: bool
    package: str
    def __init__(self, name: _Optional[str] = ..., available: _Optional[bool] = ..., version: _Optional[str] = ..., execution_providers: _Optional[_Iterable[str]] = ..., unavailable_reason: _Optional[str] = ..., layer_profile: _Optional[bool] = ..., package: _Optional[str] = ...) -> None: ...

class BoardDescription(_message.Message):
    __slots__ = ("cpu_model", "cpu_cores", "board_model", "kernel", "machine", "python_version", "hostname", "os", "memory_bytes", "l2_cache_bytes", "l3_cache_bytes")
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    BOARD_MODEL_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    MACHINE_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    L2_CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    L3_CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    cpu_model: str
    cpu_cores: int
    board_model: str
    kernel: str
    machine: str
    python_version: str
    hostname: str
    os: str
    memory_bytes: int
    l2_cache_bytes: int
    l3_cache_bytes: int
    def __init__(self, cpu_model: _Optional[str] = ..., cpu_cores: _Optional[int] = ..., board_model: _Optional[str] = ..., kernel: _Optional[str] = ..., machine: _Optional[str] = ..., python_version: _Optional[str] = ..., hostname: _Optional[str] = ..., os: _Optional[str] = ..., memory_bytes: _Optional[int] = ..., l2_cache_bytes: _Optional[int] = ..., l3_cache_bytes: _Optional[int] = ...) -> None: ...

class ThermalReading(_message.Message):
    __slots__ = ("zone", "celsius")
    ZONE_FIELD_NUMBER: _ClassVar[int]
    CELSIUS_FIELD_NUMBER: _ClassVar[int]
    zone: str
    celsius: float
    def __init__(self, zone: _Optional[str] = ..., celsius: _Optional[float] = ...) -> None: ...

class BoardState(_message.Message):
    __slots__ = ("timestamp_unix", "governor", "cpu_mhz", "cpu_max_mhz", "temperatures", "max_celsius", "throttled", "throttle_flags", "throttle_source", "load_1m", "memory_available_bytes", "gpu")
    TIMESTAMP_UNIX_FIELD_NUMBER: _ClassVar[int]
    GOVERNOR_FIELD_NUMBER: _ClassVar[int]
    CPU_MHZ_FIELD_NUMBER: _ClassVar[int]
    CPU_MAX_MHZ_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURES_FIELD_NUMBER: _ClassVar[int]
    MAX_CELSIUS_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_FIELD_NUMBER: _ClassVar[int]
    THROTTLE_FLAGS_FIELD_NUMBER: _ClassVar[int]
    THROTTLE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    LOAD_1M_FIELD_NUMBER: _ClassVar[int]
    MEMORY_AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    timestamp_unix: float
    governor: str
    cpu_mhz: float
    cpu_max_mhz: float
    temperatures: _containers.RepeatedCompositeFieldContainer[ThermalReading]
    max_celsius: float
    throttled: bool
    throttle_flags: int
    throttle_source: str
    load_1m: float
    memory_available_bytes: int
    gpu: GpuState
    def __init__(self, timestamp_unix: _Optional[float] = ..., governor: _Optional[str] = ..., cpu_mhz: _Optional[float] = ..., cpu_max_mhz: _Optional[float] = ..., temperatures: _Optional[_Iterable[_Union[ThermalReading, _Mapping]]] = ..., max_celsius: _Optional[float] = ..., throttled: _Optional[bool] = ..., throttle_flags: _Optional[int] = ..., throttle_source: _Optional[str] = ..., load_1m: _Optional[float] = ..., memory_available_bytes: _Optional[int] = ..., gpu: _Optional[_Union[GpuState, _Mapping]] = ...) -> None: ...

class GpuState(_message.Message):
    __slots__ = ("kind", "name", "power_mode", "power_mode_id", "jetson_clocks", "gpu_mhz", "gpu_max_mhz", "gpu_min_mhz", "memory_mhz", "celsius", "power_watts", "rails", "throttle_reasons", "release", "unavailable_reason")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POWER_MODE_FIELD_NUMBER: _ClassVar[int]
    POWER_MODE_ID_FIELD_NUMBER: _ClassVar[int]
    JETSON_CLOCKS_FIELD_NUMBER: _ClassVar[int]
    GPU_MHZ_FIELD_NUMBER: _ClassVar[int]
    GPU_MAX_MHZ_FIELD_NUMBER: _ClassVar[int]
    GPU_MIN_MHZ_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MHZ_FIELD_NUMBER: _ClassVar[int]
    CELSIUS_FIELD_NUMBER: _ClassVar[int]
    POWER_WATTS_FIELD_NUMBER: _ClassVar[int]
    RAILS_FIELD_NUMBER: _ClassVar[int]
    THROTTLE_REASONS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    power_mode: str
    power_mode_id: int
    jetson_clocks: str
    gpu_mhz: float
    gpu_max_mhz: float
    gpu_min_mhz: float
    memory_mhz: float
    celsius: float
    power_watts: float
    rails: _containers.RepeatedCompositeFieldContainer[PowerRail]
    throttle_reasons: _containers.RepeatedScalarFieldContainer[str]
    release: str
    unavailable_reason: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., power_mode: _Optional[str] = ..., power_mode_id: _Optional[int] = ..., jetson_clocks: _Optional[str] = ..., gpu_mhz: _Optional[float] = ..., gpu_max_mhz: _Optional[float] = ..., gpu_min_mhz: _Optional[float] = ..., memory_mhz: _Optional[float] = ..., celsius: _Optional[float] = ..., power_watts: _Optional[float] = ..., rails: _Optional[_Iterable[_Union[PowerRail, _Mapping]]] = ..., throttle_reasons: _Optional[_Iterable[str]] = ..., release: _Optional[str] = ..., unavailable_reason: _Optional[str] = ...) -> None: ...

class PowerRail(_message.Message):
    __slots__ = ("name", "watts")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WATTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    watts: float
    def __init__(self, name: _Optional[str] = ..., watts: _Optional[float] = ...) -> None: ...

class StoreInfo(_message.Message):
    __slots__ = ("models", "bytes_used", "bytes_cap", "max_model_bytes")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    BYTES_USED_FIELD_NUMBER: _ClassVar[int]
    BYTES_CAP_FIELD_NUMBER: _ClassVar[int]
    MAX_MODEL_BYTES_FIELD_NUMBER: _ClassVar[int]
    models: int
    bytes_used: int
    bytes_cap: int
    max_model_bytes: int
    def __init__(self, models: _Optional[int] = ..., bytes_used: _Optional[int] = ..., bytes_cap: _Optional[int] = ..., max_model_bytes: _Optional[int] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("sha256", "size_bytes", "format", "label")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size_bytes: int
    format: ModelFormat
    label: str
    def __init__(self, sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., format: _Optional[_Union[ModelFormat, str]] = ..., label: _Optional[str] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_id", "size_bytes", "format", "label", "stored_unix", "last_used_unix")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    STORED_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_UNIX_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    size_bytes: int
    format: ModelFormat
    label: str
    stored_unix: float
    last_used_unix: float
    def __init__(self, model_id: _Optional[str] = ..., size_bytes: _Optional[int] = ..., format: _Optional[_Union[ModelFormat, str]] = ..., label: _Optional[str] = ..., stored_unix: _Optional[float] = ..., last_used_unix: _Optional[float] = ...) -> None: ...

class HasModelResponse(_message.Message):
    __slots__ = ("present", "model")
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    present: bool
    model: ModelInfo
    def __init__(self, present: _Optional[bool] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "store")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    store: StoreInfo
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., store: _Optional[_Union[StoreInfo, _Mapping]] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class TimingConfig(_message.Message):
    __slots__ = ("warmup_runs", "warmup_seconds", "min_runs", "min_seconds", "max_seconds", "runs_per_sample")
    WARMUP_RUNS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MIN_RUNS_FIELD_NUMBER: _ClassVar[int]
    MIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RUNS_PER_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    warmup_runs: int
    warmup_seconds: float
    min_runs: int
    min_seconds: float
    max_seconds: float
    runs_per_sample: int
    def __init__(self, warmup_runs: _Optional[int] = ..., warmup_seconds: _Optional[float] = ..., min_runs: _Optional[int] = ..., min_seconds: _Optional[float] = ..., max_seconds: _Optional[float] = ..., runs_per_sample: _Optional[int] = ...) -> None: ...

class InputSpec(_message.Message):
    __slots__ = ("name", "shape", "dtype")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ...) -> None: ...

class ExecutionProvider(_message.Message):
    __slots__ = ("name", "options")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    options: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class BenchmarkRequest(_message.Message):
    __slots__ = ("model_id", "runtime", "threads", "inputs", "timing", "profile_layers", "seed", "execution_provider", "time_limit_seconds", "cooldown_celsius", "execution_providers")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    PROFILE_LAYERS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COOLDOWN_CELSIUS_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    runtime: str
    threads: int
    inputs: _containers.RepeatedCompositeFieldContainer[InputSpec]
    timing: TimingConfig
    profile_layers: bool
    seed: int
    execution_provider: str
    time_limit_seconds: float
    cooldown_celsius: float
    execution_providers: _containers.RepeatedCompositeFieldContainer[ExecutionProvider]
    def __init__(self, model_id: _Optional[str] = ..., runtime: _Optional[str] = ..., threads: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[InputSpec, _Mapping]]] = ..., timing: _Optional[_Union[TimingConfig, _Mapping]] = ..., profile_layers: _Optional[bool] = ..., seed: _Optional[int] = ..., execution_provider: _Optional[str] = ..., time_limit_seconds: _Optional[float] = ..., cooldown_celsius: _Optional[float] = ..., execution_providers: _Optional[_Iterable[_Union[ExecutionProvider, _Mapping]]] = ...) -> None: ...

class ProviderPlacement(_message.Message):
    __slots__ = ("provider", "kernels")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    KERNELS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    kernels: int
    def __init__(self, provider: _Optional[str] = ..., kernels: _Optional[int] = ...) -> None: ...

class Statistics(_message.Message):
    __slots__ = ("n", "median_ms", "mean_ms", "p90_ms", "p95_ms", "p99_ms", "min_ms", "max_ms", "std_ms", "cv")
    N_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_MS_FIELD_NUMBER: _ClassVar[int]
    MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    P90_MS_FIELD_NUMBER: _ClassVar[int]
    P95_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_MS_FIELD_NUMBER: _ClassVar[int]
    STD_MS_FIELD_NUMBER: _ClassVar[int]
    CV_FIELD_NUMBER: _ClassVar[int]
    n: int
    median_ms: float
    mean_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    cv: float
    def __init__(self, n: _Optional[int] = ..., median_ms: _Optional[float] = ..., mean_ms: _Optional[float] = ..., p90_ms: _Optional[float] = ..., p95_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., min_ms: _Optional[float] = ..., max_ms: _Optional[float] = ..., std_ms: _Optional[float] = ..., cv: _Optional[float] = ...) -> None: ...

class LayerTime(_message.Message):
    __slots__ = ("node", "op_type", "block", "time_ms", "raw_ms", "kernel")
    NODE_FIELD_NUMBER: _ClassVar[int]
    OP_TYPE_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    RAW_MS_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    node: str
    op_type: str
    block: str
    time_ms: float
    raw_ms: float
    kernel: str
    def __init__(self, node: _Optional[str] = ..., op_type: _Optional[str] = ..., block: _Optional[str] = ..., time_ms: _Optional[float] = ..., raw_ms: _Optional[float] = ..., kernel: _Optional[str] = ...) -> None: ...

class BenchmarkResult(_message.Message):
    __slots__ = ("model_id", "runtime", "runtime_version", "execution_provider", "threads", "timing", "inputs", "stats", "samples_ms", "session_create_ms", "first_run_ms", "layers", "layer_profile_available", "layer_profile_note", "board", "state_start", "state_end", "throttled", "clock_dropped", "warnings", "started_unix", "finished_unix", "agent_version", "max_celsius", "interference", "session_providers", "placement", "copy_in_ms", "copy_out_ms", "timed_call", "time_limit_seconds")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_MS_FIELD_NUMBER: _ClassVar[int]
    SESSION_CREATE_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_RUN_MS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    LAYER_PROFILE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    LAYER_PROFILE_NOTE_FIELD_NUMBER: _ClassVar[int]
    BOARD_FIELD_NUMBER: _ClassVar[int]
    STATE_START_FIELD_NUMBER: _ClassVar[int]
    STATE_END_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_FIELD_NUMBER: _ClassVar[int]
    CLOCK_DROPPED_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_FIELD_NUMBER: _ClassVar[int]
    FINISHED_UNIX_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_CELSIUS_FIELD_NUMBER: _ClassVar[int]
    INTERFERENCE_FIELD_NUMBER: _ClassVar[int]
    SESSION_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    COPY_IN_MS_FIELD_NUMBER: _ClassVar[int]
    COPY_OUT_MS_FIELD_NUMBER: _ClassVar[int]
    TIMED_CALL_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    runtime: str
    runtime_version: str
    execution_provider: str
    threads: int
    timing: TimingConfig
    inputs: _containers.RepeatedCompositeFieldContainer[InputSpec]
    stats: Statistics
    samples_ms: _containers.RepeatedScalarFieldContainer[float]
    session_create_ms: float
    first_run_ms: float
    layers: _containers.RepeatedCompositeFieldContainer[LayerTime]
    layer_profile_available: bool
    layer_profile_note: str
    board: BoardDescription
    state_start: BoardState
    state_end: BoardState
    throttled: bool
    clock_dropped: bool
    warnings: _containers.RepeatedScalarFieldContainer[str]
    started_unix: float
    finished_unix: float
    agent_version: str
    max_celsius: float
    interference: Interference
    session_providers: _containers.RepeatedScalarFieldContainer[str]
    placement: _containers.RepeatedCompositeFieldContainer[ProviderPlacement]
    copy_in_ms: float
    copy_out_ms: float
    timed_call: str
    time_limit_seconds: float
    def __init__(self, model_id: _Optional[str] = ..., runtime: _Optional[str] = ..., runtime_version: _Optional[str] = ..., execution_provider: _Optional[str] = ..., threads: _Optional[int] = ..., timing: _Optional[_Union[TimingConfig, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[InputSpec, _Mapping]]] = ..., stats: _Optional[_Union[Statistics, _Mapping]] = ..., samples_ms: _Optional[_Iterable[float]] = ..., session_create_ms: _Optional[float] = ..., first_run_ms: _Optional[float] = ..., layers: _Optional[_Iterable[_Union[LayerTime, _Mapping]]] = ..., layer_profile_available: _Optional[bool] = ..., layer_profile_note: _Optional[str] = ..., board: _Optional[_Union[BoardDescription, _Mapping]] = ..., state_start: _Optional[_Union[BoardState, _Mapping]] = ..., state_end: _Optional[_Union[BoardState, _Mapping]] = ..., throttled: _Optional[bool] = ..., clock_dropped: _Optional[bool] = ..., warnings: _Optional[_Iterable[str]] = ..., started_unix: _Optional[float] = ..., finished_unix: _Optional[float] = ..., agent_version: _Optional[str] = ..., max_celsius: _Optional[float] = ..., interference: _Optional[_Union[Interference, _Mapping]] = ..., session_providers: _Optional[_Iterable[str]] = ..., placement: _Optional[_Iterable[_Union[ProviderPlacement, _Mapping]]] = ..., copy_in_ms: _Optional[float] = ..., copy_out_ms: _Optional[float] = ..., timed_call: _Optional[str] = ..., time_limit_seconds: _Optional[float] = ...) -> None: ...

class Interference(_message.Message):
    __slots__ = ("available", "other_cpu_cores", "steal_fraction", "cpu_pressure_avg10", "load_1m", "busy")
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    OTHER_CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    STEAL_FRACTION_FIELD_NUMBER: _ClassVar[int]
    CPU_PRESSURE_AVG10_FIELD_NUMBER: _ClassVar[int]
    LOAD_1M_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    available: bool
    other_cpu_cores: float
    steal_fraction: float
    cpu_pressure_avg10: float
    load_1m: float
    busy: bool
    def __init__(self, available: _Optional[bool] = ..., other_cpu_cores: _Optional[float] = ..., steal_fraction: _Optional[float] = ..., cpu_pressure_avg10: _Optional[float] = ..., load_1m: _Optional[float] = ..., busy: _Optional[bool] = ...) -> None: ...

class BenchmarkEvent(_message.Message):
    __slots__ = ("queued", "cooling_down", "warming_up", "measuring", "profiling", "result")
    class Queued(_message.Message):
        __slots__ = ("position",)
        POSITION_FIELD_NUMBER: _ClassVar[int]
        position: int
        def __init__(self, position: _Optional[int] = ...) -> None: ...
    class CoolingDown(_message.Message):
        __slots__ = ("celsius", "target_celsius")
        CELSIUS_FIELD_NUMBER: _ClassVar[int]
        TARGET_CELSIUS_FIELD_NUMBER: _ClassVar[int]
        celsius: float
        target_celsius: float
        def __init__(self, celsius: _Optional[float] = ..., target_celsius: _Optional[float] = ...) -> None: ...
    class WarmingUp(_message.Message):
        __slots__ = ("runs",)
        RUNS_FIELD_NUMBER: _ClassVar[int]
        runs: int
        def __init__(self, runs: _Optional[int] = ...) -> None: ...
    class Measuring(_message.Message):
        __slots__ = ("runs", "elapsed_seconds")
        RUNS_FIELD_NUMBER: _ClassVar[int]
        ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
        runs: int
        elapsed_seconds: float
        def __init__(self, runs: _Optional[int] = ..., elapsed_seconds: _Optional[float] = ...) -> None: ...
    class Profiling(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    COOLING_DOWN_FIELD_NUMBER: _ClassVar[int]
    WARMING_UP_FIELD_NUMBER: _ClassVar[int]
    MEASURING_FIELD_NUMBER: _ClassVar[int]
    PROFILING_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    queued: BenchmarkEvent.Queued
    cooling_down: BenchmarkEvent.CoolingDown
    warming_up: BenchmarkEvent.WarmingUp
    measuring: BenchmarkEvent.Measuring
    profiling: BenchmarkEvent.Profiling
    result: BenchmarkResult
    def __init__(self, queued: _Optional[_Union[BenchmarkEvent.Queued, _Mapping]] = ..., cooling_down: _Optional[_Union[BenchmarkEvent.CoolingDown, _Mapping]] = ..., warming_up: _Optional[_Union[BenchmarkEvent.WarmingUp, _Mapping]] = ..., measuring: _Optional[_Union[BenchmarkEvent.Measuring, _Mapping]] = ..., profiling: _Optional[_Union[BenchmarkEvent.Profiling, _Mapping]] = ..., result: _Optional[_Union[BenchmarkResult, _Mapping]] = ...) -> None: ...
