"""``push_to_hub``: upload a GHN checkpoint directory to a Hugging Face Hub model repo.

The directory is loaded first, with the same checks as ``load_ghn`` (files present, sha256 of the weights
against ``config.json``, state-dict keys and shapes against the config), so a checkpoint that would not
load is never pushed. The upload is one commit of exactly the checkpoint files (``config.json``,
``model.safetensors``, ``README.md``) through ``HfApi.create_commit``; a missing model card is generated.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from torch_qinit.hub._hub import (
    CONFIG_NAME,
    MODEL_CARD_NAME,
    WEIGHTS_NAME,
    GHNLoadError,
    _library_version,
    default_model_card,
    load_ghn,
)

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

__all__ = ["push_to_hub"]

logger = logging.getLogger(__name__)

_LIBRARY = "torch_qinit"


def _check_repo_id(repo_id: str) -> str:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    # load_ghn only treats "namespace/name" as a Hub id, so a pushed repo must have that form to be loadable.
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"repo_id must be 'namespace/name' (e.g. 'your-org/ghn-qat-fmnist'), got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ValueError(f"invalid Hub repo id {repo_id!r}: {exc}") from exc
    return repo_id


def push_to_hub(directory: str | os.PathLike[str], repo_id: str, *, revision: str | None = None,
                private: bool | None = None, token: str | None = None, commit_message: str | None = None,
                create_repo: bool = True) -> CommitInfo:
    """Upload the checkpoint in ``directory`` (written by ``save_pretrained``) to the Hub repo ``repo_id``.

    Args:
        directory: a checkpoint directory with ``config.json`` and ``model.safetensors`` (``README.md`` is
            generated from the config when missing).
        repo_id: ``"namespace/name"``; ``load_ghn(repo_id)`` / ``initialize_(weights=repo_id)`` load it back.
        revision: the branch to commit to (created from ``main`` if missing); default ``main``.
        private: visibility of a newly created repo (``None``: the Hub's default).
        token: a Hub token with write access; default: ``HF_TOKEN`` or the saved login.
        commit_message: default ``"Upload torch_qinit GHN checkpoint (<method>, sha256 <12 hex>)"``.
        create_repo: create the repo if it does not exist (``exist_ok``).

    Returns:
        huggingface_hub's ``CommitInfo`` (``.oid`` is the commit sha, ``.commit_url`` its page).

    Raises:
        GHNLoadError: the directory is not a loadable checkpoint (nothing is uploaded).
        ValueError: ``repo_id`` is not ``"namespace/name"``.
        huggingface_hub.errors.HfHubHTTPError: the Hub refused a request (auth, permissions, ...).

    Examples:
        >>> push_to_hub("runs/ghn-qat/final", "your-org/ghn-qat-fmnist")  # doctest: +SKIP
        >>> ghn = load_ghn("your-org/ghn-qat-fmnist")                      # doctest: +SKIP
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    repo_id = _check_repo_id(repo_id)
    directory = Path(directory).expanduser()
    if not directory.is_dir():  # checked here: load_ghn would read a missing "a/b" as a Hub repo id
        raise GHNLoadError(f"{directory} is not a directory; push a checkpoint directory holding {CONFIG_NAME} "
                           f"and {WEIGHTS_NAME} (written by save_pretrained or torch-qinit train)")
    ghn = load_ghn(directory)  # GHNLoadError before any network call if the checkpoint is broken
    sha = ghn.weights_sha256
    files: dict[str, str | bytes] = {CONFIG_NAME: str(directory / CONFIG_NAME),
                                     WEIGHTS_NAME: str(directory / WEIGHTS_NAME)}
    card = directory / MODEL_CARD_NAME
    if card.is_file():
        files[MODEL_CARD_NAME] = str(card)
    else:
        n_params = sum(p.numel() for p in ghn.parameters())
        files[MODEL_CARD_NAME] = default_model_card(ghn.config, num_parameters=n_params,
                                                    weights_sha256=sha).encode("utf-8")
        logger.info("%s has no %s; pushing a generated model card", directory, MODEL_CARD_NAME)

    api = HfApi(token=token, library_name=_LIBRARY, library_version=_library_version())
    if create_repo:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision not in (None, "main"):
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=src) for name, src in files.items()]
    message = commit_message or f"Upload torch_qinit GHN checkpoint ({ghn.config.method}, sha256 {sha[:12]})"
    info = api.create_commit(repo_id, operations, commit_message=message, revision=revision, repo_type="model")
    logger.info("pushed %s to %s@%s (commit %s)", directory, repo_id, revision or "main", info.oid)
    return info
