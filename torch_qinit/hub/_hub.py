"""GHN checkpoint I/O: the bundled weights, local directories and the Hugging Face Hub.

Every Hub call of the library lives in this module. A checkpoint directory holds

* ``model.safetensors``: the GHN state dict (float32, or float16 to keep shipped files small);
* ``config.json``: the ``GHNConfig`` dict plus a top-level ``"weights_sha256"`` of the weights file;
* ``README.md``: a model card.

Weights are never unpickled: safetensors only, no ``torch.load``.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import json
import logging
import math
import os
import re
import socket
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import torch

from torch_qinit.ghn.config import GHNConfig

if TYPE_CHECKING:  # the model module is imported lazily: it is heavier and may import this one
    from torch_qinit.ghn.model import GHN

__all__ = [
    "WEIGHTS_NAME",
    "CONFIG_NAME",
    "MODEL_CARD_NAME",
    "WEIGHTS_DIR_ENV",
    "BUNDLED_CHECKPOINTS",
    "BUNDLED_INPUTS",
    "HUB_PREFIX",
    "MAX_SHIPPED_BYTES",
    "GHNLoadError",
    "bundled_weights_dir",
    "bundled_checkpoint_dir",
    "save_pretrained",
    "load_ghn",
    "resolve_checkpoint",
    "load_checkpoint_dir",
    "validate_config",
    "ghn_fingerprint",
    "sha256_file",
    "default_model_card",
]

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
MODEL_CARD_NAME = "README.md"
#: Overrides where the bundled checkpoints are looked up (a folder with ``ghn-qat/``, ``ghn/``, ...).
WEIGHTS_DIR_ENV = "TORCH_QINIT_WEIGHTS_DIR"
#: Names accepted by ``load_ghn`` → sub-folder of the bundled weights folder.  The CIFAR-10 ones may
#: not be installed yet; ``initialize_`` then falls back to the Fashion-MNIST one and says so.
BUNDLED_CHECKPOINTS: dict[str, str] = {
    "default": "ghn-qat", "ghn-qat": "ghn-qat", "ghn": "ghn",
    "ghn-qat-cifar10": "ghn-qat-cifar10", "ghn-cifar10": "ghn-cifar10",
}
#: Training data of each bundled checkpoint: (dataset, input shape C×H×W), for choosing one by the
#: model's first layer.  A checkpoint's own config.json ``input_shape`` wins where it is installed.
BUNDLED_INPUTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "ghn-qat": ("Fashion-MNIST", (1, 28, 28)), "ghn": ("Fashion-MNIST", (1, 28, 28)),
    "ghn-qat-cifar10": ("CIFAR-10", (3, 32, 32)), "ghn-cifar10": ("CIFAR-10", (3, 32, 32)),
}
#: ARCHITECTURE.md §5 "Checkpoints": a shipped checkpoint stays at or below this size.
MAX_SHIPPED_BYTES = 20 * 1024 * 1024

_SHA_KEY = "weights_sha256"
_LIBRARY = "torch_qinit"
_REPO_ROOT = Path(__file__).resolve().parents[2]


class GHNLoadError(OSError):
    """A GHN checkpoint could not be fetched or does not match its config; the message says what to do."""


# --------------------------------------------------------------------------- locating checkpoints


def _library_version() -> str:
    try:
        return importlib.metadata.version(_LIBRARY)
    except importlib.metadata.PackageNotFoundError:  # running from a source checkout
        return "0+unknown"


def bundled_weights_dir() -> Path:
    """The folder holding the bundled checkpoints.

    ``$TORCH_QINIT_WEIGHTS_DIR`` if set; else the installed package data ``torch_qinit.weights``;
    else ``<repo>/weights`` (source checkouts and editable installs).
    """
    env = os.environ.get(WEIGHTS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    try:
        files = importlib.resources.files("torch_qinit.weights")
    except ModuleNotFoundError:
        files = None
    if isinstance(files, Path) and files.is_dir():
        return files
    return _REPO_ROOT / "weights"


def bundled_checkpoint_dir(name: str = "default") -> Path:
    """The directory of a bundled checkpoint (a key of ``BUNDLED_CHECKPOINTS``); it may not exist."""
    if name not in BUNDLED_CHECKPOINTS:
        raise ValueError(f"unknown bundled checkpoint {name!r}; bundled names: {sorted(BUNDLED_CHECKPOINTS)}")
    return bundled_weights_dir() / BUNDLED_CHECKPOINTS[name]


# --------------------------------------------------------------------------- saving


def sha256_file(path: Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _state_for_saving(ghn: torch.nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, t in ghn.state_dict().items():
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        # clone: safetensors refuses tensors that share storage (views, tied weights)
        out[name] = t.contiguous().clone()
    return out


def default_model_card(config: GHNConfig, *, num_parameters: int | None = None,
                       weights_sha256: str | None = None, weights_dtype: str | None = None) -> str:
    """A model card (README.md with Hub metadata) describing data, normalization, design space and training."""
    training = dict(config.training or {})
    command = training.pop("command", None)
    space = training.pop("design_space", None) or (
        "CNNs and MLPs sampled by `torch_qinit.space`: plain conv, conv+BN, depthwise-separable (with and "
        "without BN), residual, inverted-bottleneck, dense and fire blocks, squeeze-excite, 1-3 Linear heads; "
        "widths 8-512, kernels 1-7, BN/GroupNorm/LayerNorm, seven activations."
    )
    from ..data import dataset_for_input  # lazy: the Hub module needs data only for the card's wording
    data = dataset_for_input(tuple(config.input_shape))
    norm = config.normalization or {}
    norm_text = ", ".join(f"{k} {v:.4f}" for k, v in norm.items()) or "not recorded"
    title = "GHN-QAT" if config.method == "ghn-qat" else "GHN (float)"
    bits = ", ".join(str(b) for b in config.bits)
    lines = [
        "---",
        f"library_name: {_LIBRARY}",
        "license: mit",
        "tags:",
        "- quantization",
        "- quantization-aware-training",
        "- graph-hypernetwork",
        f"- {config.method}",
        "datasets:",
        f"- {data.name if data else 'custom'}",
        "---",
        "",
        f"# {title} checkpoint for torch_qinit",
        "",
        "A graph hypernetwork that predicts the parameters of a CNN from its computational graph and the "
        "target bit width, used as the starting point for quantization-aware training.",
        "",
        "```python",
        "import torch_qinit",
        f"report = torch_qinit.initialize_(model, bits=4)  # method={config.method!r}",
        "```",
        "",
        "## Training data",
        "",
        f"- Dataset: {data.title if data else 'custom'}, input shape {tuple(config.input_shape)}, "
        f"{config.num_classes} classes.",
        f"- Normalization: {norm_text} (per channel where numbered; apply the same to your inputs).",
        f"- Design space: {space}",
        f"- Bits seen in training: {bits} (weights and activations, per layer).",
        "",
        "## Architecture",
        "",
        f"- hidden {config.hidden}, layers {config.layers}, heads {config.heads}",
        f"- decoder block ({config.block_out}, {config.block_in}, {config.block_kernel}, {config.block_kernel}), "
        f"rank {config.decoder_rank}",
    ]
    if num_parameters is not None:
        lines.append(f"- {num_parameters:,} parameters")
    lines += ["", "## Training", ""]
    lines.append(f"Command: `{command}`" if command else "Command: not recorded.")
    for key, value in sorted(training.items()):
        lines.append(f"- {key}: {value}")
    lines += ["", "## Files", "", f"- `{WEIGHTS_NAME}`" + (f" ({weights_dtype})" if weights_dtype else "")]
    if weights_sha256:
        lines.append(f"- sha256 `{weights_sha256}` (checked on load)")
    lines += [f"- `{CONFIG_NAME}`: `GHNConfig` plus `{_SHA_KEY}`", f"- torch_qinit version {config.version}", ""]
    return "\n".join(lines)


def save_pretrained(ghn: torch.nn.Module, directory: str | os.PathLike[str], model_card: str | None = None,
                    dtype: torch.dtype | None = None) -> Path:
    """Write ``ghn`` as ``model.safetensors`` + ``config.json`` + ``README.md`` into ``directory``.

    ``dtype=torch.float16`` stores floating tensors in half precision (loading casts back to float32),
    which halves the file for shipping. ``model_card`` replaces the generated ``README.md``.
    Returns the directory.

    Examples:
        >>> save_pretrained(ghn, "weights/ghn-qat", dtype=torch.float16)  # doctest: +SKIP
    """
    from safetensors.torch import save_file

    config = getattr(ghn, "config", None)
    if not isinstance(config, GHNConfig):
        raise TypeError(f"save_pretrained expects a GHN with a GHNConfig `.config`, got {type(ghn).__name__}")
    if dtype is not None and not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype or None, got {dtype}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_NAME
    state = _state_for_saving(ghn, dtype)
    save_file(state, str(weights), metadata={"format": "pt", "library": _LIBRARY, "version": _library_version()})
    sha = sha256_file(weights)
    size = weights.stat().st_size
    if size > MAX_SHIPPED_BYTES:
        logger.warning("%s is %.1f MB, above the %d MB shipping limit; consider dtype=torch.float16",
                       weights, size / 2**20, MAX_SHIPPED_BYTES // 2**20)
    cfg = config.to_dict()
    cfg[_SHA_KEY] = sha
    (directory / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    if model_card is None:
        n_params = sum(p.numel() for p in ghn.parameters())
        dtype_name = str(dtype or torch.float32).removeprefix("torch.")
        model_card = default_model_card(config, num_parameters=n_params, weights_sha256=sha,
                                        weights_dtype=dtype_name)
    (directory / MODEL_CARD_NAME).write_text(model_card, encoding="utf-8")
    logger.info("saved GHN to %s (%.2f MB, sha256 %s)", directory, size / 2**20, sha[:12])
    return directory


# --------------------------------------------------------------------------- loading


def _is_true(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hub_offline() -> bool:
    from huggingface_hub import constants

    # huggingface_hub reads HF_HUB_OFFLINE once at import; re-read it so a later os.environ change counts.
    return bool(constants.HF_HUB_OFFLINE) or _is_true(os.environ.get("HF_HUB_OFFLINE"))


def _download(repo_id: str, filename: str, revision: str | None, cache_dir: str | os.PathLike[str] | None,
              *, optional: bool = False, unreachable: str | None = None) -> Path | None:
    """``hf_hub_download`` with errors turned into ``GHNLoadError`` that say what to do.

    `unreachable` (why the Hub cannot be reached, from `_probe_hub`) means: the cache only, no request.
    """
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    rev = revision or "main"
    what = f"{filename!r} from Hub repo {repo_id!r} at revision {rev!r}"
    fallback = "or pass a local checkpoint directory, or use load_ghn('default') (bundled, works offline)"
    offline = _hub_offline()
    try:
        path = hf_hub_download(
            repo_id, filename, revision=revision, cache_dir=cache_dir,
            local_files_only=offline or bool(unreachable),
            library_name=_LIBRARY, library_version=_library_version(),
        )
        return Path(path)
    except GatedRepoError as exc:
        if optional:
            return None
        raise GHNLoadError(f"cannot fetch {what}: the repo is gated or private; log in with `hf auth login` "
                           f"or set HF_TOKEN, {fallback}") from exc
    except RepositoryNotFoundError as exc:
        if optional:
            return None
        raise GHNLoadError(f"cannot fetch {what}: repository not found (404) on {constants.ENDPOINT}, "
                           f"and no local directory of that name exists. Check the repo id (private repos need "
                           f"`hf auth login`), {fallback}") from exc
    except RevisionNotFoundError as exc:
        if optional:
            return None
        raise GHNLoadError(f"cannot fetch {what}: revision not found (404). Check the branch, tag or "
                           f"commit, {fallback}") from exc
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        if optional:
            return None
        if offline:
            raise GHNLoadError(f"cannot fetch {what}: HF_HUB_OFFLINE is set and the file is not in the Hub "
                               f"cache ({cache_dir or constants.HF_HUB_CACHE}). Unset HF_HUB_OFFLINE to "
                               f"download it, {fallback}") from exc
        if unreachable:
            raise GHNLoadError(f"cannot fetch {what}: the Hub ({constants.ENDPOINT}) could not be reached "
                               f"({unreachable}) and the file is not in the Hub cache "
                               f"({cache_dir or constants.HF_HUB_CACHE}). Check the connection, proxy and "
                               f"HF_ENDPOINT, or use weights that need no Hub: initialize_(..., weights=None) "
                               f"uses the bundled checkpoint, {fallback}") from exc
        raise GHNLoadError(f"cannot fetch {what}: the Hub ({constants.ENDPOINT}) could not be reached and the "
                           f"file is not cached. Check the connection, proxy and HF_ENDPOINT, {fallback}") from exc
    except EntryNotFoundError as exc:  # remote 404 for the file itself (Local... is caught above)
        if optional:
            return None
        raise GHNLoadError(f"cannot fetch {what}: file not found (404) in the repo. A torch_qinit checkpoint "
                           f"holds {CONFIG_NAME} and {WEIGHTS_NAME} (see save_pretrained)") from exc
    except HfHubHTTPError as exc:
        if optional:
            return None
        raise GHNLoadError(f"cannot fetch {what}: {exc}") from exc


def _parse_config(path: Path) -> tuple[GHNConfig, str | None]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GHNLoadError(f"{path} is not a readable JSON file: {exc}") from exc
    if not isinstance(raw, dict):
        raise GHNLoadError(f"{path} must hold a JSON object, got {type(raw).__name__}")
    sha = raw.pop(_SHA_KEY, None)
    try:
        config = GHNConfig.from_dict(raw)
        validate_config(config)
    except (TypeError, ValueError) as exc:
        raise GHNLoadError(f"{path} does not describe a GHN this torch_qinit understands: {exc}") from exc
    return config, sha


def _check_int(config: GHNConfig, name: str, minimum: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"field {name!r} must be an integer >= {minimum}, got {value!r}")


def validate_config(config: GHNConfig) -> None:
    """Raise ValueError naming the first field of `config` that no GHN can be built from.

    Checked on load, before the model is built, so a bad ``config.json`` gives one clear error
    instead of whatever the constructor trips over (``ZeroDivisionError`` for ``heads=0``, ...).
    """
    for name in ("hidden", "heads", "block_out", "block_in", "block_kernel", "decoder_rank", "num_classes"):
        _check_int(config, name, 1)
    _check_int(config, "layers", 0)
    if hasattr(config, "decoder_version"):
        _check_int(config, "decoder_version", 1)
    if config.hidden % config.heads:
        raise ValueError(f"field 'hidden' ({config.hidden}) must be divisible by field 'heads' ({config.heads})")
    if config.method not in ("ghn", "ghn-qat"):
        raise ValueError(f"field 'method' must be 'ghn' or 'ghn-qat', got {config.method!r}")
    for b in config.bits:
        if isinstance(b, bool) or not isinstance(b, int) or not 2 <= b <= 8:
            raise ValueError(f"field 'bits' must list integers in 2..8, got {list(config.bits)!r}")
    shape = config.input_shape
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(f"field 'input_shape' must list positive integers (C, H, W), got {list(shape)!r}")
    norm = config.normalization
    if not isinstance(norm, dict) or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in norm.values()):
        raise ValueError(f"field 'normalization' must map names to finite numbers, got {norm!r}")
    if not isinstance(config.training, dict):
        raise ValueError(f"field 'training' must be an object, got {type(config.training).__name__}")
    if not isinstance(config.version, str):
        raise ValueError(f"field 'version' must be a string, got {config.version!r}")


def _check_keys(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], source: str) -> None:
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    mismatched = [f"{k}: checkpoint {tuple(got[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in sorted(set(expected) & set(got)) if got[k].shape != expected[k].shape]
    if not (missing or unexpected or mismatched):
        return

    def fmt(items: list[str]) -> str:
        return ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")

    parts = []
    if missing:
        parts.append(f"missing keys: {fmt(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {fmt(unexpected)}")
    if mismatched:
        parts.append(f"shape mismatches: {fmt(mismatched)}")
    raise GHNLoadError(f"{WEIGHTS_NAME} of {source} does not match its {CONFIG_NAME}: " + "; ".join(parts))


def load_checkpoint_dir(directory: str | os.PathLike[str], source_id: str | None = None,
                        map_location: str | torch.device = "cpu") -> GHN:
    """Load the GHN in checkpoint `directory` (``config.json`` validated, weights' sha256 checked)."""
    directory = Path(directory)
    return _load_dir(directory, source_id or f"local:{directory.resolve()}", map_location)


def _load_dir(directory: Path, source_id: str, map_location: str | torch.device) -> GHN:
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    from torch_qinit.ghn.model import GHN

    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for p in (config_path, weights_path):
        if not p.is_file():
            raise GHNLoadError(f"{source_id}: {p} is missing; a checkpoint directory holds {CONFIG_NAME} and "
                               f"{WEIGHTS_NAME} (written by torch_qinit.hub.save_pretrained)")
    config, expected_sha = _parse_config(config_path)
    blob = weights_path.read_bytes()  # hash and parse the same bytes: no window for the file to change
    sha = hashlib.sha256(blob).hexdigest()
    if expected_sha is None:
        logger.warning("%s has no %s; cannot verify %s", config_path, _SHA_KEY, WEIGHTS_NAME)
    elif sha != str(expected_sha).lower():
        raise GHNLoadError(f"checksum mismatch for {weights_path}: sha256 {sha} but {CONFIG_NAME} records "
                           f"{expected_sha}. The file is corrupt, truncated or was replaced; re-download it "
                           "(delete it from the Hub cache) or re-save the checkpoint")
    try:
        tensors = load_safetensors(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise GHNLoadError(f"{weights_path} is not a valid safetensors file (corrupt or truncated): {exc}") from exc
    tensors = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    ghn = GHN(config)
    _check_keys(ghn.state_dict(), tensors, source_id)
    ghn.load_state_dict(tensors, strict=True)
    ghn.to(map_location)
    ghn.eval()
    ghn.source_id = source_id
    ghn.weights_sha256 = sha
    logger.info("loaded GHN %s (sha256 %s)", source_id, sha[:12])
    return ghn


def _hub_repo_id(name: str) -> str | None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    # Hub model ids are "namespace/name"; a bare word is far more likely a typo of a bundled name.
    if name.count("/") != 1:
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


#: Hub user and organization names: letters, digits and single inner dashes (no "_" or ".").
_HUB_NAMESPACE = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
#: Forces a Hub lookup for a name that would otherwise read as a local path.
HUB_PREFIX = "hf://"


def _path_like(name: str) -> bool:
    """Whether `name` reads as a local path rather than a Hub id ``namespace/name``.

    So a mistyped directory fails with "no such directory" instead of a Hub lookup (and, offline,
    its retries).  ``hf://namespace/name`` opts out.
    """
    if name.startswith((".", "/", "~")) or name.endswith("/") or "\\" in name:  # "\\": Windows separators
        return True
    if name.count("/") != 1:
        return "/" in name
    namespace = name.split("/", 1)[0]
    # a namespace that exists here means a path; one no Hub account can have means a path too
    return Path(namespace).expanduser().is_dir() or not _HUB_NAMESPACE.fullmatch(namespace)


def _probe_hub() -> str | None:
    """None if a TCP connection to the Hub endpoint (or its proxy) opens, else why not.

    huggingface_hub retries connection errors with backoff (1+2+4+8+8 s) before failing, so an
    unreachable Hub cost about 23 s per call; one connect with a short timeout fails in milliseconds.
    """
    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return None  # an endpoint we cannot parse: let huggingface_hub report it
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        purl = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if not purl.hostname:
            return None
        host, port = purl.hostname, purl.port or (443 if purl.scheme == "https" else 80)
    timeout = min(float(constants.HF_HUB_ETAG_TIMEOUT or 10), 5.0)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc}"
    return None


def _bundled_dir(name: str, revision: str | None) -> Path:
    if revision is not None:
        raise ValueError(f"revision={revision!r} applies to Hub repo ids, not the bundled {name!r}")
    directory = bundled_checkpoint_dir(name)
    if not (directory / WEIGHTS_NAME).is_file():
        raise GHNLoadError(
            f"bundled checkpoint {name!r} is not installed: no {WEIGHTS_NAME} in {directory}. "
            f"Reinstall torch_qinit with its weights, set {WEIGHTS_DIR_ENV} to a folder holding "
            f"{sorted(set(BUNDLED_CHECKPOINTS.values()))}, or pass a checkpoint directory or Hub repo id"
        )
    return directory


def resolve_checkpoint(name_or_path: str | os.PathLike[str] = "default", *, revision: str | None = None,
                       cache_dir: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """``(directory, source id)`` of a checkpoint, without loading it.

    Same resolution as `load_ghn`; a Hub id is downloaded into (or found in) the Hub cache, and the
    directory is its snapshot folder.
    """
    if isinstance(name_or_path, str) and name_or_path in BUNDLED_CHECKPOINTS:
        directory = _bundled_dir(name_or_path, revision)
        return directory, f"bundled:{BUNDLED_CHECKPOINTS[name_or_path]}"

    name = os.fspath(name_or_path)
    force_hub = isinstance(name, str) and name.startswith(HUB_PREFIX)
    if not force_hub:
        path = Path(name).expanduser()
        if path.is_file() and path.name in (WEIGHTS_NAME, CONFIG_NAME):
            path = path.parent  # a path to one of the files means its checkpoint directory
        if path.is_dir():
            if revision is not None:
                raise ValueError(f"revision={revision!r} applies to Hub repo ids, not the local directory {path}")
            return path, f"local:{path.resolve()}"
        if not isinstance(name_or_path, str) or _path_like(name):
            what = "not a directory" if path.exists() else "no such directory"
            raise ValueError(
                f"{what}: {name!r} (resolved to {path.resolve()}) is not a local checkpoint directory, and it is "
                f"not a bundled checkpoint ({', '.join(sorted(BUNDLED_CHECKPOINTS))}) either. Hub repo ids look "
                f"like 'namespace/name'; write '{HUB_PREFIX}{name}' to look it up on the Hub anyway"
            )
    repo_id = _hub_repo_id(name[len(HUB_PREFIX):] if force_hub else name)
    if repo_id is None:
        raise ValueError(
            f"{name!r} is not a bundled checkpoint ({', '.join(sorted(BUNDLED_CHECKPOINTS))}), "
            "an existing checkpoint directory, or a Hugging Face Hub repo id ('namespace/name')"
        )
    unreachable = None if _hub_offline() else _probe_hub()
    if unreachable:
        logger.warning("the Hugging Face Hub is unreachable (%s); looking for %s in the Hub cache", unreachable,
                       repo_id)
    config_path = _download(repo_id, CONFIG_NAME, revision, cache_dir, unreachable=unreachable)
    weights_path = _download(repo_id, WEIGHTS_NAME, revision, cache_dir, unreachable=unreachable)
    _download(repo_id, MODEL_CARD_NAME, revision, cache_dir, optional=True,  # cached for offline reading
              unreachable=unreachable)
    assert config_path is not None and weights_path is not None
    if config_path.parent != weights_path.parent:
        # Both come from one snapshot unless the revision moved between the two requests.
        raise GHNLoadError(f"{repo_id}@{revision or 'main'} changed while downloading; retry, or pin a commit "
                           "with revision=")
    commit = config_path.parent.name  # the Hub cache keeps files under snapshots/<commit>/
    return config_path.parent, f"hf:{repo_id}@{commit}"


def load_ghn(name_or_path: str | os.PathLike[str] = "default", *, revision: str | None = None,
             cache_dir: str | os.PathLike[str] | None = None, map_location: str | torch.device = "cpu") -> GHN:
    """Load a GHN in eval mode from a bundled name, a local directory or a Hugging Face Hub repo id.

    Resolution order: a bundled name (``"default"`` = ``"ghn-qat"``, ``"ghn"``, ``"ghn-qat-cifar10"``,
    ``"ghn-cifar10"``), then an existing directory, then a Hub repo id ``"namespace/name"`` fetched with
    ``hf_hub_download`` (``revision`` pins a branch, tag or commit; ``cache_dir`` overrides the Hub cache;
    ``HF_HUB_OFFLINE=1`` uses the cache only).  A name that reads as a path (``./x``, ``a/b/c``,
    ``no_such_dir/ckpt``: Hub namespaces have no ``_`` or ``.``) and does not exist raises "no such
    directory" without asking the Hub; ``"hf://namespace/name"`` forces a Hub lookup.  When the Hub
    cannot be reached, cached files are used, or ``GHNLoadError`` is raised at once (no retries).
    ``config.json`` is validated and the weights' sha256 checked against it; tensors are cast to float32.
    The result carries ``source_id`` and ``weights_sha256`` (see ``ghn_fingerprint``).
    Raises ``ValueError`` for a name that is none of these and ``GHNLoadError`` when loading fails.

    Examples:
        >>> ghn = load_ghn()                                        # doctest: +SKIP
        >>> ghn = load_ghn("someone/ghn-qat-fmnist", revision="v1")  # doctest: +SKIP
    """
    directory, source_id = resolve_checkpoint(name_or_path, revision=revision, cache_dir=cache_dir)
    return _load_dir(directory, source_id, map_location)


def ghn_fingerprint(ghn: torch.nn.Module) -> tuple[str, str]:
    """``(source id, sha256)`` identifying a GHN's weights, for reports.

    For a GHN from ``load_ghn`` this is where it came from and the checksum of the weights file it was
    loaded from (later in-place training does not update it); for any other GHN,
    ``("unsaved", sha256 of its float32 state dict in safetensors form)``.
    """
    source = getattr(ghn, "source_id", None)
    sha = getattr(ghn, "weights_sha256", None)
    if source and sha:
        return source, sha
    from safetensors.torch import save

    blob = save(_state_for_saving(ghn, torch.float32))
    return "unsaved", hashlib.sha256(blob).hexdigest()

