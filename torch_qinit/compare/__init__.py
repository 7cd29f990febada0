"""Benchmark initializers on *your* model and data, and gate CI on the result (``torch-qinit compare``).

    from torch_qinit.compare import check_requirements, compare, markdown

    result = compare("models.py:build_net", dataset="fmnist", bits="4,2", steps=200, seeds="0,1")
    print(markdown(result))
    failed = [o for o in check_requirements(result, ["ghn-qat >= he_normal + 2"]) if not o.passed]

Per method and bit width it measures zero-shot quantized accuracy, the QAT curve and final
accuracy, the steps to reach the best classic init's final accuracy, mean ± std over seeds, and
the time spent.  Exit codes of the CLI: :data:`EXIT_OK`, :data:`EXIT_REQUIREMENT_FAILED`,
:data:`EXIT_USAGE`, :data:`EXIT_DIVERGED`.
"""
# One definition each, shared with the demo and the benchmarks; kept in compare's API for its users.
from ..results import machine_string, mean_std
from .datasets import DATASETS, Data, load_image_folder, resolve_data
from .errors import (
    EXIT_DIVERGED,
    EXIT_OK,
    EXIT_REQUIREMENT_FAILED,
    EXIT_USAGE,
    CompareError,
    DataError,
    ModelLoadError,
)
from .gates import GateOutcome, Requirement, check_requirements, parse_requirement
from .loading import ModelFactory, load_object, parse_model_kwargs
from .report import append_step_summary, exit_code, markdown, plot_curves, verdicts, write_outputs
from .runner import (
    DEFAULT_LR,
    DEFAULT_METHODS,
    CompareResult,
    RunResult,
    compare,
    first_reach,
    parse_int_list,
    parse_methods,
)

__all__ = [
    "compare",
    "CompareResult",
    "RunResult",
    "DEFAULT_METHODS",
    "DEFAULT_LR",
    "DATASETS",
    "Data",
    "resolve_data",
    "load_image_folder",
    "ModelFactory",
    "load_object",
    "parse_model_kwargs",
    "parse_int_list",
    "parse_methods",
    "Requirement",
    "GateOutcome",
    "parse_requirement",
    "check_requirements",
    "markdown",
    "verdicts",
    "write_outputs",
    "plot_curves",
    "append_step_summary",
    "exit_code",
    "mean_std",
    "first_reach",
    "machine_string",
    "CompareError",
    "ModelLoadError",
    "DataError",
    "EXIT_OK",
    "EXIT_REQUIREMENT_FAILED",
    "EXIT_USAGE",
    "EXIT_DIVERGED",
]
