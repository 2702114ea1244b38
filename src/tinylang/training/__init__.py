"""Training: the train config, learning-rate schedules and the training loop."""

from .config import TrainConfig
from .loop import train_run
from .schedules import lr_lambda

__all__ = ["TrainConfig", "lr_lambda", "train_run"]
