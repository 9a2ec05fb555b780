"""Models: `UnitScaledModel`, backbones and task models."""

from keras_unitscale.models.unit_scaled_model import DEFAULT_LEARNING_RATE, UnitScaledModel
