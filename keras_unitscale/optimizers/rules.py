"""u-muP's learning-rate rules: one multiplier per weight, from the role its layer declared.

Why a unit-scaled model needs them. Unit scaling fixes every weight at std 1 and moves the
`fan_in ** -0.5` that standard initialisation puts into the weights into the op instead. A
weight of std 1 that Adam moves by a step `eta` per element changes the op's output by about
`eta * fan_in * fan_in ** -0.5 = eta * sqrt(fan_in)` when the update is aligned with the input
(what muP assumes, Yang & Hu 2021), so a width-independent change of the output needs
`eta ~ fan_in ** -0.5`. The rules below are u-muP's (Blake et al., "u-muP: The Unit-Scaled
Maximal Update Parametrization", ICLR 2025, Table 3; also Graphcore's `unit-scaling` library,
`unit_scaling.optim`):

Adam, AdamW (the update is sign-like, so only the output's sensitivity matters):
- hidden weights (`"weight"`): `fan_in ** -0.5`;
- embedding tables (`"embedding"`): `width ** -0.5`, u-muP's empirical embedding rule (muP
  itself would give 1; the paper measured better transfer with the table's width, its
  fan-out, in place of the fan-in);
- biases, norm gains and the readout (`"bias"`, `"norm"`, `"readout"`): 1. The readout's
  forward scale is already `1 / fan_in` (`keras_unitscale.ops.readout`), so its update needs
  no width factor;
- every weight inside a residual branch of a stack of `depth` blocks: also `depth ** -0.5`
  (u-muP's depth rule, after depth-muP, Yang et al. 2023 / Bordelon et al. 2023): each of the
  `depth` branches then moves the residual stream by `depth ** -0.5` of a single block's step,
  and their sum stays fixed as blocks are added.

SGD (the update is proportional to the gradient, which unit scaling makes unit):
- hidden weights and embedding tables: `fan_in ** -0.5` (for a table, its width);
- biases and norm gains: their size `fan_out` (their gradient sums over no fan-in, so it is
  `fan_out ** -0.5` smaller than a weight's relative to its effect);
- the readout: 1; the depth rule as for Adam.

Weight decay is independent of the learning rate (Wortsman et al., "Small-scale proxies for
large-scale Transformer training instabilities", 2023; u-muP section 4.4): a weight shrinks by
`weight_decay` per step at the schedule's peak, by `weight_decay * lr_t / peak` elsewhere,
whatever the rate and whatever its multiplier, so that sweeping the rate does not also sweep
the regularisation.
"""

from keras_unitscale.layers._weights import role_of

ADAM, SGD = "adam", "sgd"


def lr_multiplier(variable, rule=ADAM):
    """The learning-rate multiplier u-muP gives `variable` under `rule` (`"adam"`, `"sgd"`).

    A variable that no keras_unitscale layer declared (a plain Keras layer's, say) gets 1.

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> dense = ku.layers.Dense(8)
    >>> _ = dense(np.zeros((2, 64), "float32"))
    >>> lr_multiplier(dense.kernel)  # 64 ** -0.5
    0.125
    >>> lr_multiplier(dense.bias)
    1.0
    """
    if rule not in (ADAM, SGD):
        raise ValueError(f"`rule` must be 'adam' or 'sgd'; received {rule!r}.")
    role = role_of(variable)
    if role is None:
        return 1.0
    multiplier = 1.0 if role.depth is None else float(role.depth) ** -0.5
    if role.role in ("weight", "embedding"):
        return multiplier * float(role.fan_in) ** -0.5
    if role.role in ("bias", "norm") and rule == SGD:
        return multiplier * float(variable.shape[-1])
    return multiplier


def learning_rate_multipliers(model, rule=ADAM):
    """`{variable.path: multiplier}` for every trainable variable of `model` (a layer or model).

    Example:
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> backbone = ku.models.TransformerEncoderBackbone(
    ...     vocabulary_size=50, num_layers=4, num_heads=2, hidden_dim=64, intermediate_dim=128)
    >>> multipliers = learning_rate_multipliers(backbone)
    >>> multipliers["embeddings/token_embedding/embeddings"]  # 64 ** -0.5
    0.125
    >>> # A hidden weight inside the blocks: fan_in 64, depth 4.
    >>> multipliers["transformer_layer_0/self_attention/query_kernel"]
    0.0625
    """
    return {v.path: lr_multiplier(v, rule) for v in model.trainable_variables}


def peak_learning_rate(learning_rate):
    """The largest rate a float or a Keras schedule reaches, for independent weight decay.

    Known from the schedule's config (`initial_learning_rate`, `warmup_target`,
    `end_learning_rate`, `values`); None for a schedule that names none of them.
    """
    if isinstance(learning_rate, (int, float)) and not isinstance(learning_rate, bool):
        return float(learning_rate)
    try:
        config = learning_rate.get_config()
    except (AttributeError, NotImplementedError):  # a schedule without a config
        return None
    candidates = []
    for key in ("initial_learning_rate", "warmup_target", "end_learning_rate"):
        value = config.get(key)
        if isinstance(value, (int, float)):
            candidates.append(float(value))
    values = config.get("values")
    if isinstance(values, (list, tuple)):
        candidates += [float(v) for v in values]
    return max(candidates) if candidates else None
