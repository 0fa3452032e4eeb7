"""ALBSNN Lab: adaptive local binary spiking neural networks (library part).

The library (neurons, binarization, estimator, BWO, models, storage, export, data, training)
imports without Ray or MLflow; the platform (sweeps, tracking, reports, CLI) builds on it.
"""

from albsnn.binarize import Binarizer, BinaryConv2d, BinaryLinear
from albsnn.errors import AlbsnnError, ConfigError, DataError, ModelFileError
from albsnn.models import ModelConfig, build_model, list_models
from albsnn.neuron import LIF
from albsnn.train import TrainConfig, fit

__version__ = "0.1.0"

__all__ = [
    "AlbsnnError",
    "Binarizer",
    "BinaryConv2d",
    "BinaryLinear",
    "ConfigError",
    "DataError",
    "LIF",
    "ModelConfig",
    "ModelFileError",
    "TrainConfig",
    "build_model",
    "fit",
    "list_models",
]
