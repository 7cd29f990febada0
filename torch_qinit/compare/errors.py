"""Errors of `torch_qinit.compare` and the exit codes the `torch-qinit compare` CLI maps them to."""
from __future__ import annotations

__all__ = [
    "EXIT_OK",
    "EXIT_REQUIREMENT_FAILED",
    "EXIT_USAGE",
    "EXIT_DIVERGED",
    "CompareError",
    "ModelLoadError",
    "DataError",
]

#: Everything ran and every ``--require`` held.
EXIT_OK = 0
#: A ``--require`` failed on the measured means (or named a method that failed to run).
EXIT_REQUIREMENT_FAILED = 1
#: Bad arguments, a model that cannot be loaded or built, unusable data, or nothing could be measured.
EXIT_USAGE = 2
#: ``--fail-on-divergence`` and at least one QAT run ended in NaN.
EXIT_DIVERGED = 3


class CompareError(Exception):
    """A problem the user has to fix (arguments, model, data); the message is one readable line."""

    exit_code = EXIT_USAGE


class ModelLoadError(CompareError):
    """The MODEL spec cannot be imported, its factory raised, or it did not return an nn.Module."""


class DataError(CompareError):
    """The data cannot be loaded, or its batches do not fit the model."""
