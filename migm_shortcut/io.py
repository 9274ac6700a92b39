"""Atomic file writes and safe loading of weights and JSON.

Every file the package writes goes to a temporary name in the same folder and is moved
into place with ``os.replace``, so a killed job never leaves a half-written file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from migm_shortcut.errors import MigmError


_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def atomic_dir(path: str | Path):
    """Write a whole folder (a pipeline, a checkpoint folder) under a temporary sibling name inside the
    block; on success it replaces ``path`` in two renames, so a killed job leaves the old folder or
    the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        old = path.with_name(f".{path.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, obj: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")

    _atomic(Path(path), write)


def append_jsonl(path: str | Path, record: dict) -> None:
    """Add one JSON line to ``path``; the file is rewritten atomically, so it never holds half a line."""
    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    line = json.dumps(record, allow_nan=False) + "\n"
    _atomic(path, lambda tmp: Path(tmp).write_text(old + line))


def write_bytes(path: str | Path, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    _atomic(Path(path), write)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def save_torch(path: str | Path, obj: Any) -> None:
    """Atomic ``torch.save`` for training checkpoints (optimizer state is not a flat tensor dict)."""
    _atomic(Path(path), lambda tmp: torch.save(obj, tmp))


def load_torch(path: str | Path, trust: bool = False) -> Any:
    """A ``torch.save`` file, tensors and plain containers only (``weights_only``) unless ``trust``:
    unpickling anything else can run code from the file, so only a user who trusts it opts in."""
    path = Path(path)
    if not path.is_file():
        raise MigmError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (or, before torch 1.6, a pickle): anything else is not such a file at
    # all, which the weights-only unpickler would otherwise report as "holds Python objects"
    if head != b"PK\x03\x04" and not head.startswith(b"\x80"):
        raise MigmError(f"checkpoint {path} is corrupt or not a torch.save file; replace it with the file as downloaded")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except ModuleNotFoundError as exc:  # a trusted file naming a class of a library that is not installed
        raise MigmError(f"{path} names classes of {exc.name!r}, which is not installed: pip install {exc.name}, "
                        "or read its tensors only (load_tensor_records)") from None
    except pickle.UnpicklingError as exc:
        if not trust and "Weights only load failed" in str(exc):
            raise MigmError(f"{path} holds Python objects besides tensors, and loading them can run code from the file; "
                            "pass --trust-remote-code (trust_remote_code=True) only if you trust its source") from None
        raise MigmError(f"checkpoint {path} is corrupt or truncated (UnpicklingError); delete it and rerun without --resume") from None
    except Exception as exc:  # torch raises many types for a truncated zip
        raise MigmError(f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}); delete it and rerun without --resume") from None


class InertObject:
    """Stands in for an object of a class a checkpoint names but that is never imported or run (a
    training library's callbacks, hyper-parameter namespaces): it keeps what the file gave it."""

    origin = "?"

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state

    # a subclass of dict or list is filled item by item after it is made (SETITEMS, APPENDS)
    def __setitem__(self, key, value):
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value):
        self.__dict__.setdefault("values", []).append(value)

    def extend(self, values):
        self.__dict__.setdefault("values", []).extend(values)

    def __repr__(self) -> str:
        return f"<not loaded: {self.origin}>"


class _TensorRecordsUnpickler(pickle.Unpickler):
    """Resolves only the globals torch's own ``weights_only`` loader allows (tensors, storages, plain
    containers); every other global the file names becomes an ``InertObject`` subclass, so no module
    is imported and no code from the file runs."""

    def __init__(self, file, **kwargs):
        from torch._weights_only_unpickler import _get_allowed_globals

        super().__init__(file, **kwargs)
        self.allowed = _get_allowed_globals()

    def find_class(self, module: str, name: str):
        if f"{module}.{name}" in self.allowed:
            return self.allowed[f"{module}.{name}"]
        return type(name, (InertObject,), {"origin": f"{module}.{name}", "__module__": __name__})


class _TensorRecordsPickle:
    """The ``pickle_module`` torch.load reads the file with."""

    Unpickler = _TensorRecordsUnpickler

    @staticmethod
    def load(file, **kwargs):
        return _TensorRecordsUnpickler(file, **kwargs).load()


def load_tensor_records(path: str | Path) -> Any:
    """A ``torch.save`` file (a training library's checkpoint, say) read for its tensors only: tensors
    and plain containers as saved, every other object an inert placeholder (``InertObject``). Nothing
    from the file runs and the library that wrote it need not be installed."""
    path = Path(path)
    if not path.is_file():
        raise MigmError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TensorRecordsPickle)
    except Exception as exc:  # torch raises many types for a truncated zip
        raise MigmError(f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {str(exc)[:80]})") from None


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise MigmError(f"file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MigmError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise MigmError(f"weights not found: {path} (run `migm-shortcut train-base` or pass the right folder)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise MigmError(f"weights file {path} is corrupt or truncated ({exc}); re-copy it or retrain it") from None


def tensor_digest(*tensors: torch.Tensor) -> str:
    """A short content hash of tensors, used to fingerprint a base model.

    Hashed at fp16 precision, so a model and its fp16 safetensors copy have the same digest.
    """
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to(torch.float16).contiguous().cpu()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """A short content hash of a file, or of every file in a folder (names included).

    Identifies the head or calibration a sweep row was measured with, so a resumed sweep
    reuses a row only if the files behind it are byte for byte the same.
    """
    path = Path(path)
    folder = path.is_dir()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if folder else [path]
    if not files:
        raise MigmError(f"{path} does not exist or holds no files")
    h = hashlib.sha256()
    for f in files:
        if folder:
            h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
