"""u-muP's optimizers: the multipliers each layer's weights get, and that the update is
Keras' own update at the rate times the multiplier."""

import math

import keras
import numpy as np
import pytest
from keras import ops

import keras_unitscale as ku
from keras_unitscale.optimizers import learning_rate_multipliers, lr_multiplier


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


# --- The rules, written out from u-muP's Table 3 (not from the code under test) -----------

def test_dense_kernel_bias_and_readout():
    hidden = ku.layers.Dense(16)
    hidden(_x(2, 64))
    readout = ku.layers.Dense(5, readout=True)
    readout(_x(2, 36))
    assert lr_multiplier(hidden.kernel) == pytest.approx(1 / 8)
    assert lr_multiplier(hidden.bias) == 1.0
    assert lr_multiplier(readout.kernel) == 1.0
    # SGD: weights fan_in ** -0.5, biases their size, the readout 1.
    assert lr_multiplier(hidden.kernel, "sgd") == pytest.approx(1 / 8)
    assert lr_multiplier(hidden.bias, "sgd") == 16.0
    assert lr_multiplier(readout.kernel, "sgd") == 1.0


def test_embedding_uses_its_width():
    embedding = ku.layers.Embedding(1000, 256)
    embedding(np.array([[1, 2]]))
    assert lr_multiplier(embedding.embeddings) == pytest.approx(1 / 16)
    position = ku.layers.PositionEmbedding(sequence_length=8)
    position(_x(1, 4, 49))
    assert lr_multiplier(position.position_embeddings) == pytest.approx(1 / 7)


def test_attention_projections_use_their_own_fan_in():
    mha = ku.layers.MultiHeadAttention(num_heads=2, key_dim=8, value_dim=32, output_shape=12)
    mha(_x(2, 3, 100), _x(2, 5, 25), _x(2, 5, 9))
    fans = {"query_kernel": 100, "key_kernel": 9, "value_kernel": 25,
            "attention_output_kernel": 64}
    for name, fan_in in fans.items():
        assert lr_multiplier(getattr(mha, name.replace("attention_output", "output"))) == (
            pytest.approx(fan_in**-0.5)), name


@pytest.mark.parametrize("layer_class", [ku.layers.LSTM, ku.layers.GRU])
def test_recurrent_kernels(layer_class):
    layer = layer_class(16)
    layer(_x(2, 3, 81))
    cell = layer.cell
    assert lr_multiplier(cell.kernel) == pytest.approx(1 / 9)
    assert lr_multiplier(cell.recurrent_kernel) == pytest.approx(1 / 4)
    assert lr_multiplier(cell.bias) == 1.0
    assert lr_multiplier(cell.bias, "sgd") == float(cell.bias.shape[-1])


def test_norm_gain_and_bias():
    norm = ku.layers.LayerNormalization()
    norm(_x(2, 10))
    assert lr_multiplier(norm.gamma) == 1.0 and lr_multiplier(norm.beta) == 1.0
    assert lr_multiplier(norm.gamma, "sgd") == 10.0


def test_depth_rule_in_backbone_and_not_outside():
    backbone = ku.models.TransformerDecoderBackbone(
        vocabulary_size=30, num_layers=9, num_heads=2, hidden_dim=16, intermediate_dim=36)
    lm = ku.models.CausalLM(backbone, tie_weights=False)
    multipliers = learning_rate_multipliers(lm)
    assert len(multipliers) == len(lm.trainable_variables)
    depth = 9**-0.5
    seen = set()
    for variable in lm.trainable_variables:
        m = multipliers[variable.path]
        if "transformer_layer" in variable.path:
            fan_in = 36 if "down" in variable.path else 16
            assert m == pytest.approx(depth * fan_in**-0.5), variable.path
            seen.add("block")
        elif "embedding" in variable.path:
            assert m == pytest.approx(16**-0.5), variable.path
            seen.add("embedding")
        else:
            assert variable is lm.lm_head.kernel and m == 1.0, variable.path
            seen.add("readout")
    assert seen == {"block", "embedding", "readout"}


def test_undeclared_variables_get_one():
    dense = keras.layers.Dense(4)
    dense(_x(2, 100))
    assert lr_multiplier(dense.kernel) == 1.0


def test_bad_rule():
    dense = ku.layers.Dense(4)
    dense(_x(2, 4))
    with pytest.raises(ValueError, match="`rule`"):
        lr_multiplier(dense.kernel, "adagrad")


# --- The update: Keras' own at rate x multiplier ------------------------------------------

def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12,))
    h = ku.layers.Dense(20, activation="relu", name="hidden")(inputs)
    h = ku.layers.LayerNormalization(name="norm")(h)
    h = ku.layers.Dense(8, activation="relu", name="hidden2")(h)
    return ku.models.UnitScaledModel(inputs, ku.layers.Dense(3, readout=True, name="out")(h))


def _gradients(model, x, y):
    loss_fn = ku.losses.SparseCategoricalCrossentropy()
    if keras.backend.backend() == "jax":
        import jax

        def loss(values):
            logits, _ = model.stateless_call(values, [], x)
            return loss_fn(y, logits)

        return jax.grad(loss)([v.value for v in model.trainable_variables])
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x))
    return tape.gradient(loss, model.trainable_variables)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD"])
def test_update_is_keras_update_at_rate_times_multiplier(name):
    x, y = _x(32, 12, seed=1), np.arange(32) % 3
    ours, reference = _model(), _model()
    for a, b in zip(ours.weights, reference.weights):
        b.assign(a)
    rate = 0.3
    extra = {"momentum": 0.5} if name == "SGD" else {}
    optimizer = getattr(ku.optimizers, name)(rate, **extra)
    rule = "sgd" if name == "SGD" else "adam"
    # One plain Keras optimizer per variable, at the rate times the rule's multiplier.
    plain = [getattr(keras.optimizers, name)(
        rate * lr_multiplier(v, rule), **({"weight_decay": 0.0} if name == "AdamW" else {}),
        **extra) for v in reference.trainable_variables]
    multipliers = {v.path: lr_multiplier(v, rule) for v in ours.trainable_variables}
    assert len(set(multipliers.values())) >= 3  # the rates really differ
    for _ in range(3):
        # Both take the same gradients, so what is compared is the update alone, not a
        # second forward and backward pass whose roundings compound over the steps.
        grads = [ops.convert_to_numpy(g) for g in _gradients(ours, x, y)]
        optimizer.apply(grads, ours.trainable_variables)
        for opt, g, v in zip(plain, grads, reference.trainable_variables):
            opt.apply([g], [v])
        for a, b in zip(ours.trainable_variables, reference.trainable_variables):
            np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b),
                                       rtol=1e-5, atol=1e-6, err_msg=a.path)
    assert optimizer.learning_rate_multipliers == multipliers


def test_schedules_are_followed():
    model = _model()
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0], [0.5, 0.05])
    optimizer = ku.optimizers.SGD(schedule)
    kernel = model.get_layer("hidden").kernel
    grads = [np.ones(v.shape, 'float32') for v in model.trainable_variables]
    steps = []
    for _ in range(3):
        before = ops.convert_to_numpy(kernel)
        optimizer.apply(grads, model.trainable_variables)
        steps.append(float(np.mean(before - ops.convert_to_numpy(kernel))))
    m = 12**-0.5
    np.testing.assert_allclose(steps, [0.5 * m, 0.05 * m, 0.05 * m], rtol=1e-5)


@pytest.mark.parametrize("rate", [0.01, 3.0])
def test_weight_decay_is_independent_of_the_rate(rate):
    model = _model()
    optimizer = ku.optimizers.AdamW(rate, weight_decay=0.1)
    before = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    zero = [np.zeros(v.shape, 'float32') for v in model.trainable_variables]
    optimizer.apply(zero, model.trainable_variables)  # Adam's step is 0 for a zero gradient
    for b, v in zip(before, model.trainable_variables):
        np.testing.assert_allclose(ops.convert_to_numpy(v), 0.9 * b, rtol=1e-6, atol=1e-7)


def test_weight_decay_follows_the_schedule_relative_to_its_peak():
    model = _model()
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0], [2.0, 0.5])
    optimizer = ku.optimizers.AdamW(schedule, weight_decay=0.1)
    v = model.trainable_variables[0]
    zero = [np.zeros(w.shape, 'float32') for w in model.trainable_variables]
    b0 = ops.convert_to_numpy(v)
    optimizer.apply(zero, model.trainable_variables)
    optimizer.apply(zero, model.trainable_variables)
    # Step 1 at the peak: x 0.9; step 2 at a quarter of it: x (1 - 0.025).
    np.testing.assert_allclose(ops.convert_to_numpy(v), b0 * 0.9 * 0.975, rtol=1e-6, atol=1e-7)


def test_keras_weight_decay_on_request():
    model = _model()
    optimizer = ku.optimizers.AdamW(0.5, weight_decay=0.1, independent_weight_decay=False)
    v = model.trainable_variables[0]
    b0 = ops.convert_to_numpy(v)
    optimizer.apply([np.zeros(w.shape, 'float32') for w in model.trainable_variables],
                    model.trainable_variables)
    np.testing.assert_allclose(ops.convert_to_numpy(v), b0 * (1 - 0.05), rtol=1e-6, atol=1e-7)


def test_unknown_schedule_peak_is_an_error_naming_the_argument():
    class Halving(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return 1.0 / (1.0 + ops.cast(step, "float32"))

    with pytest.raises(ValueError, match="peak_learning_rate"):
        ku.optimizers.AdamW(Halving(), weight_decay=0.01)
    optimizer = ku.optimizers.AdamW(Halving(), weight_decay=0.01, peak_learning_rate=1.0)
    assert optimizer.peak_learning_rate == 1.0
    with pytest.raises(ValueError, match="peak_learning_rate"):
        ku.optimizers.AdamW(0.1, peak_learning_rate=-1)


def test_compile_default_and_keras_round_trip(tmp_path):
    model = _model()
    model.compile()
    assert isinstance(model.optimizer, ku.optimizers.AdamW)
    x, y = _x(64, 12, seed=2), np.arange(64) % 3
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.optimizer) is ku.optimizers.AdamW
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    # The reloaded optimizer reads the multipliers from the reloaded model's weights.
    loaded.fit(x[:16], y[:16], epochs=1, batch_size=16, verbose=0)
    kernel = loaded.get_layer("hidden").kernel
    assert loaded.optimizer.learning_rate_multipliers[kernel.path] == pytest.approx(12**-0.5)
    # Both continue identically from the same state.
    model.fit(x[:16], y[:16], epochs=1, batch_size=16, verbose=0)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b),
                                   rtol=1e-5, atol=1e-6)


def test_multipliers_transfer_the_update_size_across_width():
    """The point of the rules: one Adam step at a fixed base rate moves a hidden layer's
    output by the same amount at every width (and by sqrt(width) more without them).

    muP's premise: an update aligned with the inputs, i.e. a batch far smaller than the
    width (here 4 rows), so that the step's effect grows with the fan-in."""

    def output_change(width, multiplier_rule):
        keras.utils.set_random_seed(0)
        layer = ku.layers.Dense(width)
        x = _x(4, width, seed=3)
        y0 = ops.convert_to_numpy(layer(x))
        upstream = _x(4, width, seed=4)
        # The aligned direction: the gradient of <y, upstream>.
        grad = ops.convert_to_numpy(ops.matmul(ops.transpose(x), upstream)) * width**-0.5
        optimizer = (ku.optimizers.Adam if multiplier_rule else keras.optimizers.Adam)(0.01)
        optimizer.apply([grad, np.zeros(width, "float32")], [layer.kernel, layer.bias])
        return float(np.std(ops.convert_to_numpy(layer(x)) - y0))

    with_rules = [output_change(w, True) for w in (64, 256, 1024)]
    without = [output_change(w, False) for w in (64, 256, 1024)]
    assert max(with_rules) / min(with_rules) < 1.15
    assert without[-1] / without[0] == pytest.approx(math.sqrt(1024 / 64), rel=0.25)
