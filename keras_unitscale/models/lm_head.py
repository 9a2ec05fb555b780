"""`LMHead` lives in `keras_unitscale.layers.heads`; this path is kept for existing imports."""

from keras_unitscale.layers.heads import LMHead

__all__ = ["LMHead"]
