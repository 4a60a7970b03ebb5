"""Argument checks every real-weights WAM policy shares: local directories, device, dtype.

Weights are never downloaded: every policy that loads real weights takes local
directories, and a wrong or missing one must fail in one line that names it.
"""

from __future__ import annotations

from pathlib import Path

import torch

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp16": torch.float16, "float16": torch.float16}


def parse_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[str(name).replace("torch.", "")]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use one of {', '.join(_DTYPES)}") from None


def device_and_dtype(device: str | None, dtype: str | None) -> tuple[str, torch.dtype]:
    """CUDA + bf16 when a GPU is present, CPU + fp32 otherwise; either may be overridden."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return device, parse_dtype(dtype or ("bf16" if device.startswith("cuda") else "fp32"))


def local_dirs(policy: str, what: str, **dirs: str | Path | None) -> dict[str, Path]:
    """Every named policy argument must be given and be an existing directory."""
    missing = [f"{name}=DIR" for name, value in dirs.items() if not value]
    if missing:
        flags = " ".join(f"-a {name}=..." for name in dirs)
        raise ValueError(f"{policy} needs {' and '.join(missing)} ({flags}): {what}")
    for name, value in dirs.items():
        if not Path(value).is_dir():
            raise FileNotFoundError(f"{policy} {name} directory not found: {value}")
    return {name: Path(value) for name, value in dirs.items()}


def require_subdirs(base: Path, *subdirs: str) -> None:
    for sub in subdirs:
        if not (base / sub).is_dir():
            raise FileNotFoundError(f"base model directory {base} has no {sub}/ folder")
