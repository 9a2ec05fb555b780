"""u-muP's optimizers: Keras' Adam, AdamW and SGD with a learning-rate multiplier per weight.

Each keras_unitscale layer declares what its weights are (hidden weight, embedding table,
bias, norm gain, readout) and the fan-in and depth the rules need; the optimizers read that,
never variable names. The rules, with their sources, are in `keras_unitscale.optimizers.rules`.
"""

from keras_unitscale.optimizers.optimizers import SGD, Adam, AdamW
from keras_unitscale.optimizers.rules import learning_rate_multipliers, lr_multiplier

__all__ = ["Adam", "AdamW", "SGD", "learning_rate_multipliers", "lr_multiplier"]
