"""The base of the unit-scaled recurrent layers (`LSTM`, `GRU`): one weight container, one
`keras.layers.RNN` subclass that hands the whole sequence to the op
(`keras_unitscale.ops.recurrent`), and the handling of Keras' recurrent arguments."""

import keras
from keras import ops

from keras_unitscale import ops as uops
from keras_unitscale._validation import shapes_match
from keras_unitscale.layers import _weights
from keras_unitscale.layers._quantize import QuantizableKernels
from keras_unitscale.layers._validation import float_input, positive_int
from keras_unitscale.ops.dropout import validate_rate
from keras_unitscale.ops.formats import attach_fp8, fp8_from_config, fp8_to_config
from keras_unitscale.ops.recurrent import fused_kernel_disables_jit


class RecurrentWeights(QuantizableKernels, keras.layers.Layer):
    """The weights of an LSTM or GRU, laid out as in Keras' cells.

    Only a container: the layer runs the whole sequence itself (the scales are folded into
    the weights once per call, outside the loop), so it never steps this cell.
    """

    def __init__(self, units, gates, bias_rows, forget_bias, state_count, options=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.gates = gates
        self.bias_rows = bias_rows  # 0: no bias; 1: [gates * u]; 2: [2, gates * u] (GRU)
        self.forget_bias = forget_bias
        self.state_size = [units] * state_count
        self.output_size = units
        self.options = options or {}

    def get_config(self):
        # Never deserialised on its own: the LSTM or GRU that owns it rebuilds it, and saves
        # the weight options itself.
        config = super().get_config()
        config.update(units=self.units, gates=self.gates, bias_rows=self.bias_rows,
                      forget_bias=self.forget_bias, state_count=len(self.state_size))
        return config

    def _weight(self, name, shape, initializer):
        user = self.options.get(f"{name}_initializer")
        options = dict(
            initializer=user or initializer,
            regularizer=self.options.get(f"{name}_regularizer"),
            constraint=self.options.get(f"{name}_constraint"),
        )
        if name == "bias":
            weight = self.add_weight(name=name, shape=shape, **options)
        else:  # a kernel [fan_in, gates * units]: Keras' `quantize()` may quantise it
            weight = self.add_kernel(name, shape, channel_axis=1, **options)
        # Kernels [fan_in, gates * units]; the bias is a bias, whatever its rows.
        _weights.declare(weight, "bias" if name == "bias" else "weight",
                         None if name == "bias" else int(shape[0]))
        if user is not None and name != "bias" and self.quantization_mode is None:
            _weights.warn_if_not_unit(weight, f"{name}_initializer", self)
        return weight

    def build(self, input_shape):
        width = self.gates * self.units
        self.kernel = self._weight(
            "kernel", (input_shape[-1], width), keras.initializers.RandomNormal(stddev=1.0)
        )
        self.recurrent_kernel = self._weight(
            "recurrent_kernel", (self.units, width), keras.initializers.RandomNormal(stddev=1.0)
        )
        self.bias = None
        if self.bias_rows == 1:
            units, forget = self.units, self.forget_bias

            def bias_init(shape, dtype=None):
                # Gates i, f, c, o: only the forget block may start away from zero.
                blocks = [ops.zeros((units,)), ops.full((units,), forget), ops.zeros((2 * units,))]
                return ops.cast(ops.concatenate(blocks), dtype)

            self.bias = self._weight("bias", (width,), bias_init)
        elif self.bias_rows == 2:
            self.bias = self._weight("bias", (2, width), "zeros")

    def call(self, inputs, states):
        raise NotImplementedError("Used only through keras_unitscale's LSTM and GRU layers.")


_WEIGHT_ARGUMENTS = tuple(
    f"{weight}_{kind}"
    for weight in ("kernel", "recurrent_kernel", "bias")
    for kind in ("initializer", "regularizer", "constraint")
)


def keras_rnn_arguments(kwargs, layer):
    """Pops Keras' LSTM/GRU arguments from `kwargs`: the weight options (Keras names them
    `recurrent_initializer` etc.) as `{weight}_{kind}`, checked; refuses what unit scaling
    cannot honour, saying why."""
    for name, expected in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
        value = kwargs.pop(name, expected)
        if value not in (expected, getattr(keras.activations, expected)):
            raise ValueError(
                f"`{name}` must be {expected!r} (Keras' default): the {layer}'s scales are "
                "derived for sigmoid gates and a tanh cell (docs/lstm.md), and another "
                f"function would need its own derivation; received {value!r:.60}."
            )
    options = {}
    for keras_name in ("kernel", "recurrent", "bias"):
        weight = "recurrent_kernel" if keras_name == "recurrent" else keras_name
        for kind, check in (("initializer", keras.initializers.get),
                            ("regularizer", _weights.regularizer),
                            ("constraint", _weights.constraint)):
            value = kwargs.pop(f"{keras_name}_{kind}", None)
            if value is None:
                continue
            if kind == "initializer":
                try:
                    options[f"{weight}_{kind}"] = check(value)
                except (ValueError, TypeError) as e:
                    raise ValueError(
                        f"`{keras_name}_{kind}` must be a Keras initializer; received "
                        f"{value!r:.60}. {e}"
                    ) from None
            else:
                options[f"{weight}_{kind}"] = check(value, f"{keras_name}_{kind}")
    return options


def serialize_rnn_arguments(config, options):
    """The Keras names and serialized values of `keras_rnn_arguments`' options."""
    for key, value in options.items():
        weight, kind = key.rsplit("_", 1)
        keras_name = "recurrent" if weight == "recurrent_kernel" else weight
        config[f"{keras_name}_{kind}"] = keras.saving.serialize_keras_object(value)
    return config


def _check_rank(shape):
    if len(shape) != 3:
        raise ValueError(
            "`sequences` must have rank 3 (batch, timesteps, features); "
            f"received shape {tuple(shape)}."
        )


def _check_initial_state(initial_state, state_size, batch):
    """Static shapes (checked under `jit` too): one `[batch, size]` tensor per state."""
    sizes = [int(n) for n in keras.tree.flatten(state_size)]
    states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
    shapes = [tuple(getattr(state, "shape", ())) for state in states]
    expected = [(batch, size) for size in sizes]
    if len(shapes) != len(sizes) or not all(map(shapes_match, shapes, expected)):
        raise ValueError(
            f"`initial_state` must be {len(sizes)} tensor(s) of shape [batch, units], "
            f"{[(batch, n) for n in sizes]}; received shapes {shapes}."
        )


class UnitScaledRNN(keras.layers.RNN):
    """What the unit-scaled LSTM and GRU share: the cell's weights, arguments, masks,
    dropout, config, and the hand-over of the whole sequence to the op.

    Keras' `RNN` supplies `call` (initial and stateful states, return_sequences/state), mask
    handling and everything `Bidirectional` needs; `inner_loop` hands the sequence to the
    op. A subclass names its op and its cell's layout in the class attributes below and
    passes `cell_arguments` (extra keywords of its op) to this constructor.
    """

    _kind = None  # "lstm" or "gru": the op's cell, and the cell layer's name
    _op = None  # keras_unitscale.ops.recurrent.lstm or gru
    _gates = None  # gate blocks in a kernel's columns
    _bias_rows = None  # 1: [gates * u]; 2: [2, gates * u] (input and recurrent rows)
    _state_count = None  # states the cell carries

    def __init__(
        self,
        units,
        dropout,
        recurrent_dropout,
        seed,
        use_bias,
        constraint,
        return_sequences,
        return_state,
        go_backwards,
        stateful,
        unroll,
        use_cudnn,
        forget_bias=0.0,
        **kwargs,
    ):
        units = positive_int(units, "units")
        cell_dtype = kwargs.pop("cell_dtype", None)  # a quantised cell's policy (get_config)
        options = keras_rnn_arguments(kwargs, self._kind.upper())
        cell = RecurrentWeights(
            units,
            gates=self._gates,
            bias_rows=self._bias_rows if use_bias else 0,
            forget_bias=forget_bias,
            state_count=self._state_count,
            options=options,
            dtype=cell_dtype or kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name=f"{self._kind}_cell",
        )
        fp8 = kwargs.pop("fp8", None)  # a saved FP8 setting (keras_unitscale.precision)
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            **kwargs,
        )
        self.units = units
        self.dropout = validate_rate(dropout, "dropout")
        self.recurrent_dropout = validate_rate(recurrent_dropout, "recurrent_dropout")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.use_bias = bool(use_bias)
        self.constraint = uops.validate_constraint(constraint)
        if use_cudnn not in ("auto", True, False):
            raise ValueError(
                f"`use_cudnn` must be one of 'auto', True, False; received {use_cudnn!r}."
            )
        self.use_cudnn = use_cudnn
        if use_cudnn and fused_kernel_disables_jit(self._kind, self.unroll, self.use_bias):
            self.supports_jit = False
        attach_fp8(self, fp8_from_config(fp8))

    def build(self, sequences_shape, initial_state_shape=None):
        _check_rank(sequences_shape)
        if sequences_shape[-1] is None:
            raise ValueError(
                "The last dimension of `sequences` must be known; "
                f"received shape {tuple(sequences_shape)}."
            )
        super().build(sequences_shape, initial_state_shape)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        _check_rank(sequences.shape)
        float_input(sequences, "sequences")
        if initial_state is not None:
            _check_initial_state(initial_state, self.cell.state_size, sequences.shape[0])
        return super().call(sequences, initial_state=initial_state, mask=mask, training=training)

    def _sequence_op_kwargs(self, sequences, initial_state, mask, training):
        if keras.tree.is_nested(mask):
            mask = mask[0]
        dropout_mask = recurrent_dropout_mask = None
        # One unit-scaled mask per sequence, shared by every step (as Keras does).
        if training and self.dropout > 0:
            ones = ops.ones_like(sequences[:, 0, :])
            dropout_mask = uops.dropout(ones, self.dropout, seed=self.seed_generator)
        if training and self.recurrent_dropout > 0:
            ones = ops.ones_like(initial_state[0])
            recurrent_dropout_mask = uops.dropout(
                ones, self.recurrent_dropout, seed=self.seed_generator
            )
        return dict(
            mask=mask,
            dropout_mask=dropout_mask,
            recurrent_dropout_mask=recurrent_dropout_mask,
            return_sequences=self.return_sequences,
            go_backwards=self.go_backwards,
            unroll=self.unroll,
            zero_output_for_mask=self.zero_output_for_mask,
            constraint=self.constraint,
            fp8=self.fp8,
            use_fused=self.use_cudnn,
        )

    def _cell_arguments(self):
        """Keywords of the op that come from the cell (the LSTM's forget bias)."""
        return {}

    def inner_loop(self, sequences, initial_state, mask, training=False, **overrides):
        kwargs = self._sequence_op_kwargs(sequences, initial_state, mask, training)
        return self._op(
            sequences,
            initial_state,
            self.cell.kernel_value("kernel"),
            self.cell.kernel_value("recurrent_kernel"),
            self.cell.bias,
            **self._cell_arguments(),
            **{**kwargs, **overrides},
        )

    def step(self, sequences, state, mask=None):
        """`(outputs [batch, time, units], state)` from `state` (a list, as returned), at
        inference, for decoding a few tokens at a time inside one compiled function: never
        the fused kernel (which XLA cannot compile on TensorFlow). Masked steps keep the state.
        """
        _, outputs, state = self.inner_loop(
            sequences, state, mask, return_sequences=True, use_fused=False
        )
        return outputs, state

    def get_config(self):
        config = super().get_config()
        del config["cell"]
        config.update(
            units=self.units,
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            seed=self.seed,
            use_bias=self.use_bias,
            constraint=self.constraint,
            use_cudnn=self.use_cudnn,
        )
        if self.cell.quantization_mode is not None:
            # The cell is rebuilt by the constructor: its quantised policy travels here.
            config["cell_dtype"] = keras.dtype_policies.serialize(self.cell.dtype_policy)
        if self.fp8 is not None:
            config["fp8"] = fp8_to_config(self.fp8)
        return serialize_rnn_arguments(config, self.cell.options)

    @classmethod
    def from_config(cls, config):
        return cls(**config)
