"""Training a GHN or GHN-QAT (ARCHITECTURE.md §3): the loop and its resumable checkpoints.

The command line front end is ``torch-qinit train`` (`torch_qinit.cli.train`); this package holds no argparse
or printing.
"""
from .export import export_run, training_record
from .train_state import has_training_state, load_trained_ghn, load_training_state, save_training_state
from .trainer import (
           ArchCache,
           TrainConfig,
           fit_steps_to_budget,
           lr_at,
           sample_bits,
           step_generator,
           train,
           upgrade_decoder,
)

__all__ = ["TrainConfig", "ArchCache", "train", "lr_at", "sample_bits", "step_generator", "upgrade_decoder",
           "fit_steps_to_budget", "save_training_state", "load_training_state", "has_training_state",
           "export_run", "training_record", "load_trained_ghn"]
