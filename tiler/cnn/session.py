"""ONNX Runtime sessions: one per (model file, device, threads) per process, and the rules.

Device: ``cpu`` (ONNX Runtime's CPU provider), ``cuda`` (onnxruntime-gpu's
``CUDAExecutionProvider``; refused in one line where it is not installed) or
``auto`` (CUDA where available, else CPU). The provider is resolved once, when
the step is parsed, and run.json records it.

Threads: dask already runs one tile per core (the threaded scheduler and the
default local cluster both use ``os.cpu_count()`` threads), so ONNX Runtime
gets ``max(1, cores // dask_threads)`` intra-op threads, 1 by default: the
product never exceeds the cores, and no thread pool fights another. The
thread count is part of what makes results bit-identical (see
:mod:`tiler.cnn.blocks`), so it is fixed per run and recorded, never
adapted per tile.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from tiler.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

_sessions: dict[tuple[str, str, int], Any] = {}
_lock = threading.Lock()


def provider(device: str) -> str:
    """The execution provider for ``device`` (auto|cpu|cuda); cuda without it is refused."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise ConfigError(f"model.device: expected one of {', '.join(DEVICES)}, got {device!r}")
    available = ort.get_available_providers()
    if device == "cuda" and CUDA not in available:
        raise ConfigError(
            "model.device: cuda needs onnxruntime-gpu's CUDAExecutionProvider "
            f"(this onnxruntime has {', '.join(available)}); use device: cpu or auto"
        )
    if device == "cpu":
        return CPU
    return CUDA if CUDA in available else CPU


def default_threads(dask_threads: int | None = None, cores: int | None = None) -> int:
    """ONNX Runtime's intra-op threads: ``max(1, cores // dask_threads)`` (1 by default)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // (dask_threads or cores))


def session(path: str, execution_provider: str, threads: int) -> Any:
    """The process's InferenceSession for the model at ``path`` (created once, then reused).

    ORT's ``run`` may be called from several threads at once on one session.
    """
    key = (path, execution_provider, threads)
    with _lock:
        found = _sessions.get(key)
        if found is None:
            found = _sessions[key] = _create(path, execution_provider, threads)
    return found


def _create(path: str, execution_provider: str, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    providers = [execution_provider] + ([CPU] if execution_provider != CPU else [])
    return ort.InferenceSession(path, sess_options=options, providers=providers)
