"""`Backbone`: a functional `UnitScaledModel` built from its constructor arguments."""

import keras
from keras import ops

from keras_unitscale import _validation as check
from keras_unitscale import precision
from keras_unitscale.models.task_inputs import (
    check_model_inputs,
    checked_inputs,
    pipeline_errors,
)
from keras_unitscale.models.unit_scaled_model import UnitScaledModel
from keras_unitscale.presets.mixin import PresetMixin


def standardize_dtype(dtype):
    """A dtype policy as its name (`"mixed_float16"`), which every layer accepts.

    Policy objects are turned into names because some layers (the LSTM's weight cell) record
    their constructor arguments for serialisation and cannot serialise a policy object.
    """
    if dtype is None or isinstance(dtype, str):
        return dtype
    if isinstance(dtype, dict):
        dtype = keras.dtype_policies.deserialize(dtype)
    if type(dtype) is keras.DTypePolicy or type(dtype).__name__ == "FloatDTypePolicy":
        return dtype.name
    return dtype


def write_layer_cache(cache, layer, layer_cache):
    """`cache [batch, layers, ...]` with layer `layer`'s slot replaced by `layer_cache`.

    One `slice_update` on the stacked cache, which XLA performs in place on the decoding
    loop's buffer; stacking the layers' caches anew would copy the whole cache every step.
    """
    start = [0, layer] + [0] * (len(cache.shape) - 2)
    return ops.slice_update(cache, start, ops.cast(layer_cache, cache.dtype)[:, None])


def token_inputs():
    """The `{"token_ids", "padding_mask"}` inputs every text backbone takes (KerasHub's)."""
    return {
        "token_ids": keras.Input(shape=(None,), dtype="int32", name="token_ids"),
        "padding_mask": keras.Input(shape=(None,), dtype="int32", name="padding_mask"),
    }


@keras.saving.register_keras_serializable(package="keras_unitscale")
class Backbone(PresetMixin, UnitScaledModel):
    """Base class of the backbones: the network from token ids to hidden states, no head.

    A subclass builds its layers in `__init__` from its arguments, wires them into a
    functional graph and calls `super().__init__(inputs=..., outputs=..., dtype=dtype)`; its
    `get_config` adds its own arguments to this class's (`name`, `trainable`, `dtype`), and
    `from_config` calls the constructor again, as KerasHub's backbones do. Text backbones take
    `{"token_ids": int [batch, length], "padding_mask": [batch, length]}` (true or 1 on real
    tokens) and return `[batch, length, hidden_dim]`. `from_preset` and `save_to_preset`
    come from `keras_unitscale.presets.PresetMixin`.

    Decoder backbones (`TransformerDecoderBackbone`, `MLPBackbone`, a unidirectional
    `LSTMBackbone`, the decoder of `Seq2SeqBackbone`) share one cache contract, which the
    generative tasks use without asking which backbone they hold: `empty_cache(batch_size,
    max_length, dtype=None)` makes a cache (a tensor or a dict of them) and
    `call_with_cache(token_ids, cache, cache_update_index, padding_mask=None)` returns
    `(hidden, cache)` for the tokens at positions `cache_update_index ...`, equal to a full
    pass at those positions. A call may go over positions the cache holds already (a pass
    over all the prompts, then one token a step from the shortest prompt's end), and
    `padding_mask [batch, max_length]` is false on the positions that are padding. A
    decoder's `parallel_prefill` says how generation should run the prompts.

    Args:
        dtype: a dtype policy (or its name) for every layer, e.g. `"mixed_float16"`.
        **kwargs: `inputs`, `outputs`, `name`, `trainable` for the functional model.

    Example:
    >>> import keras, numpy as np
    >>> import keras_unitscale as ku
    >>> class BagOfWords(ku.models.Backbone):
    ...     def __init__(self, vocabulary_size, hidden_dim, dtype=None, **kwargs):
    ...         embedding = ku.layers.Embedding(vocabulary_size, hidden_dim, dtype=dtype)
    ...         inputs = keras.Input((None,), dtype="int32")
    ...         super().__init__(inputs=inputs, outputs=embedding(inputs), dtype=dtype, **kwargs)
    ...         self.token_embedding = embedding
    ...         self.vocabulary_size, self.hidden_dim = vocabulary_size, hidden_dim
    ...     def get_config(self):
    ...         config = super().get_config()
    ...         config.update(vocabulary_size=self.vocabulary_size, hidden_dim=self.hidden_dim)
    ...         return config
    >>> backbone = BagOfWords(100, 8)
    >>> clone = BagOfWords.from_config(backbone.get_config())
    >>> tuple(clone(np.array([[1, 2, 3]])).shape)
    (1, 3, 8)
    """

    parallel_prefill = True
    """Whether a decoder runs many positions in one pass at about the cost of one (attention,
    a window): generation then fills the cache with one pass over the prompts. A recurrent
    decoder sets it false: its prompts go through the decoding loop, one token a step."""

    def __init__(self, *args, dtype=None, **kwargs):
        super().__init__(*args, **kwargs)
        if dtype is not None:
            self.dtype_policy = keras.dtype_policies.get(standardize_dtype(dtype))

    def __call__(self, *args, **kwargs):
        # Concrete packed inputs are checked as a task checks them (ids in the vocabulary,
        # masks of their ids' shape, lengths within the positions); symbolic or traced
        # ones pass through.
        inputs = args[0] if args else kwargs.get("inputs")
        if isinstance(inputs, dict):
            check_model_inputs(self, inputs, "inputs")
        return super().__call__(*args, **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        # As `Task.predict` without a preprocessor: arrays checked now, a dataset, generator
        # or PyDataset batch by batch (`task_inputs.checked_inputs`).
        if batch_size is not None:
            check.positive_int(batch_size, "batch_size")
        x = checked_inputs(self, x, "x")
        with pipeline_errors(self):
            return super().predict(x, batch_size=batch_size, **kwargs)

    @property
    def token_embedding(self):
        """The layer that embeds token ids (a `keras_unitscale.layers.Embedding`)."""
        return getattr(self, "_token_embedding", None)

    @token_embedding.setter
    def token_embedding(self, value):
        self._token_embedding = value

    def get_config(self):
        # Not the functional model's nested graph: the constructor's own arguments, and
        # which layers `quantize()` turned to integers (rebuilt so by `from_config`).
        from keras_unitscale.quantization import modes

        config = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }
        record = modes.quantized_layers(self)
        if record:
            config[modes.RECORD_KEY] = record
        fp8 = precision.fp8_record(self)  # which layers keras_unitscale.precision switched
        if fp8:
            config[precision.RECORD_KEY] = fp8
        return config

    @classmethod
    def from_config(cls, config):
        from keras_unitscale.quantization import modes

        config = dict(config)
        record = config.pop(modes.RECORD_KEY, None)
        fp8 = config.pop(precision.RECORD_KEY, None)
        if "dtype" in config:
            config["dtype"] = standardize_dtype(config["dtype"])
        backbone = cls(**config)
        modes.restore_quantization(backbone, record)
        return precision.restore_fp8(backbone, fp8)
