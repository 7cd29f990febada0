"""Load user code named on the command line: ``package.module:attr`` or ``path/to/file.py:attr``."""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CompareError, ModelLoadError

__all__ = ["load_object", "ModelFactory", "parse_model_kwargs", "one_line", "where"]


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (the first line of a multi-line message)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def where(exc: BaseException) -> str:
    """``file:line`` of the innermost traceback frame of `exc`, or "" (for error lines users can act on)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    f = frames[-1]
    return f"{os.path.relpath(f.filename) if not f.filename.startswith('<') else f.filename}:{f.lineno}"


@contextlib.contextmanager
def _importable(*dirs: Path) -> Iterator[None]:
    """Put `dirs` first on sys.path for the duration (a console script's sys.path lacks the cwd)."""
    added = [str(d) for d in dirs if str(d) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for d in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(d)


def _split_spec(spec: str, what: str) -> tuple[str, str]:
    if not isinstance(spec, str) or ":" not in spec:
        raise CompareError(f"{what} must look like package.module:name or path/to/file.py:name, got {spec!r}")
    target, attr = spec.rsplit(":", 1)  # rsplit: a Windows path keeps its drive colon
    if not target or not attr.isidentifier():
        raise CompareError(f"{what} must look like package.module:name or path/to/file.py:name, got {spec!r}")
    return target, attr


def _is_file_spec(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def _import_file(path: Path, what: str, error: type[CompareError]) -> Any:
    if not path.is_file():
        raise error(f"{what}: file {path} not found")
    # A unique, stable module name per file, registered in sys.modules so dataclasses and pickling work.
    name = f"_torch_qinit_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise error(f"{what}: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with _importable(path.parent):
            spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise error(f"{what}: running {path} raised {one_line(exc)} ({where(exc)})") from exc
    return module


def _import_module(target: str, what: str, error: type[CompareError]) -> Any:
    try:
        with _importable(Path.cwd()):
            return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and (target == exc.name or target.startswith(exc.name + ".")):
            raise error(f"{what}: no module named {exc.name!r} (is it installed, or importable from the "
                        f"current directory {Path.cwd()}?)") from exc
        raise error(f"{what}: importing {target} raised {one_line(exc)} ({where(exc)})") from exc
    except Exception as exc:
        raise error(f"{what}: importing {target} raised {one_line(exc)} ({where(exc)})") from exc


def load_object(spec: str, what: str = "MODEL", error: type[CompareError] = ModelLoadError) -> Any:
    """Return the object `spec` names: ``package.module:attr`` or ``path/to/file.py:attr``.

    A file is executed as a fresh module with its own folder on ``sys.path`` (so it can import its
    neighbours); a module is imported with the current directory on ``sys.path``.  Every failure
    raises `error` with a one-line message that says what to fix.
    """
    target, attr = _split_spec(spec, what)
    if _is_file_spec(target):
        module = _import_file(Path(target).expanduser().resolve(), what, error)
    else:
        module = _import_module(target, what, error)
    try:
        return getattr(module, attr)
    except AttributeError:
        names = sorted(n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise error(f"{what}: {target} has no attribute {attr!r} (callables there: {', '.join(names[:12]) or 'none'})"
                    ) from None


def parse_model_kwargs(text: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """``--model-kwargs``: a JSON object (or a mapping) of keyword arguments for the model factory."""
    if text is None or text == "":
        return {}
    if isinstance(text, Mapping):
        return dict(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CompareError(f"--model-kwargs is not valid JSON ({exc.msg} at column {exc.colno}): {text!r}") from None
    if not isinstance(value, dict):
        raise CompareError(f"--model-kwargs must be a JSON object like '{{\"num_classes\": 10}}', got {text!r}")
    return value


class ModelFactory:
    """Builds fresh models from a user factory: a callable, or a ``module:attr`` / ``file.py:attr`` spec."""

    def __init__(self, factory: str | Callable[..., nn.Module], kwargs: Mapping[str, Any] | None = None) -> None:
        self.spec = factory if isinstance(factory, str) else getattr(factory, "__qualname__", repr(factory))
        self.fn = load_object(factory) if isinstance(factory, str) else factory
        if not callable(self.fn):
            raise ModelLoadError(f"MODEL {self.spec} is a {type(self.fn).__name__}, not a callable that returns "
                                 "an nn.Module")
        self.kwargs = dict(kwargs or {})
        # Where a file-based factory lives, so its lazy imports of neighbour modules still resolve.
        self._dirs = [Path(self.spec.rsplit(":", 1)[0]).expanduser().resolve().parent] \
            if isinstance(factory, str) and _is_file_spec(factory.rsplit(":", 1)[0]) else [Path.cwd()]

    def build(self, seed: int = 0) -> nn.Module:
        """A new model; PyTorch's global RNG is seeded for the call and restored afterwards."""
        try:
            with torch.random.fork_rng(devices=[]), _importable(*self._dirs):
                torch.manual_seed(seed)
                model = self.fn(**self.kwargs)
        except Exception as exc:
            kw = f" with {json.dumps(self.kwargs)}" if self.kwargs else ""
            raise ModelLoadError(f"building the model failed: {self.spec}{kw} raised {one_line(exc)} "
                                 f"({where(exc)})") from exc
        if not isinstance(model, nn.Module):
            raise ModelLoadError(f"MODEL {self.spec} returned a {type(model).__name__}, not an nn.Module")
        if not any(True for _ in model.parameters()):
            raise ModelLoadError(f"MODEL {self.spec} returned {type(model).__name__} without parameters")
        return model
