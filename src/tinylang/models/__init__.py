"""Architectures: one backbone, many mixers."""

from . import kernels, pyvene_hook
from .backbone import HOOK_POINTS, Block, LanguageModel, build_model
from .checkpoint import CheckpointError, checkpoint_path, load_checkpoint, read_checkpoint, save_checkpoint
from .config import ModelConfig
from .export import export_checkpoint, export_model, load_exported
from .mixers import MIXERS
from .state_mixers import STATE_MIXERS

pyvene_hook.install()  # pyvene.IntervenableModel works on our models, whatever the import order

__all__ = [
    "HOOK_POINTS", "Block", "kernels", "LanguageModel", "build_model", "CheckpointError", "checkpoint_path",
    "load_checkpoint", "read_checkpoint", "save_checkpoint", "export_checkpoint", "export_model", "load_exported",
    "ModelConfig", "MIXERS", "STATE_MIXERS",
]
