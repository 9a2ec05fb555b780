"""Unit-scaled losses: values equal to Keras' own, logit gradients of unit scale."""

import keras
from keras import ops

from keras_unitscale import ops as uops
from keras_unitscale.backend import get_keras_mask, num_replicas_in_sync, set_keras_mask

_MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


@keras.saving.register_keras_serializable(package="keras_unitscale")
class SparseCategoricalCrossentropy(keras.losses.Loss):
    """Sparse softmax cross-entropy from logits, with a unit-scaled logit gradient.

    The loss value is exactly `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`'s
    (same reduction, sample weights, Keras masks and `ignore_class`). The gradient with
    respect to each token's logits is multiplied by `N * V / sqrt(V - 1)` (`N` tokens in the
    mean, `V` classes), which makes it unit at initialisation instead of `1 / N` small: the
    backward pass of the whole model then starts at unit scale.

    Args:
        from_logits: true (default) for logits. False for probabilities (the output of a
            `Dense(..., activation="softmax", readout=True)`): the value is then Keras'
            `from_logits=False` value (normalised, clipped to `epsilon`), and the gradient
            reaching the softmax's logits is the same unit-scaled one, by taking the
            probabilities' logarithm as logits (`softmax(log p) = p`).
        ignore_class: optional label id left out of the loss (as in Keras).
        reduction, name, dtype: as in `keras.losses.Loss`.

    Example:
    >>> import numpy as np
    >>> import keras, keras_unitscale as ku
    >>> y, logits = np.array([0, 2]), np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]], "float32")
    >>> ours = ku.losses.SparseCategoricalCrossentropy()(y, logits)
    >>> theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    >>> bool(abs(float(ours) - float(theirs)) < 1e-6)
    True
    """

    def __init__(
        self,
        from_logits=True,
        ignore_class=None,
        reduction="sum_over_batch_size",
        name="sparse_categorical_crossentropy",
        dtype=None,
    ):
        if not isinstance(from_logits, bool):
            raise ValueError(f"`from_logits` must be True or False; received {from_logits!r}.")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = from_logits
        self.ignore_class = ignore_class

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Keras casts labels to the loss dtype before `call`; check what the user passed.
        dtype = getattr(y_true, "dtype", None)
        if dtype is not None and not (
            "int" in str(dtype) or "float" in str(dtype) or "bool" in str(dtype)
        ):
            raise ValueError(f"`y_true` must hold integer class ids; received dtype {dtype}.")
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        mask = get_keras_mask(y_pred)
        if self.ignore_class is not None:
            valid = ops.not_equal(y_true, self.ignore_class)
            y_true = ops.where(valid, y_true, 0)
            mask = valid if mask is None else ops.logical_and(ops.cast(mask, "bool"), valid)
        if self.reduction in _MEAN_REDUCTIONS:
            # Under `tf.distribute`, Keras divides each replica's masked mean by the number of
            # replicas too (`scale_loss_for_distribution`): the count the mean runs over is
            # then `replicas * local valid tokens`, and each token's logit gradient is unit.
            count = None
            if mask is not None:
                count = ops.sum(ops.cast(mask, "float32")) * num_replicas_in_sync()
        else:
            count = 1
        if self.from_logits:
            losses = uops.per_token_cross_entropy(y_true, y_pred, count=count)
        else:
            losses = _from_probabilities(y_true, y_pred, count)
        if self.ignore_class is not None:
            losses = ops.where(valid, losses, 0.0)
        if mask is not None:
            set_keras_mask(losses, mask)
        return losses

    def get_config(self):
        config = super().get_config()
        config.update(from_logits=self.from_logits, ignore_class=self.ignore_class)
        return config


def _from_probabilities(labels, probs, count):
    """Keras' `from_logits=False` value, with the unit-scaled gradient of `log p` as logits."""
    probs = ops.cast(probs, "float32")
    probs = probs / ops.sum(probs, axis=-1, keepdims=True)
    epsilon = keras.config.epsilon()
    log_p = ops.log(ops.clip(probs, epsilon, 1.0 - epsilon))
    ours = uops.per_token_cross_entropy(labels, log_p, count=count)
    index = ops.expand_dims(ops.cast(labels, "int32"), -1)
    keras_value = -ops.squeeze(ops.take_along_axis(log_p, index, axis=-1), -1)
    # Clipping makes `logsumexp(log p)` differ from 0 by up to `V * epsilon`: the value is
    # Keras', the gradient ours.
    return ours + ops.stop_gradient(keras_value - ours)
