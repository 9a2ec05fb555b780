import keras
import numpy as np
import pytest
from keras import ops

import keras_unitscale as ku
from roundtrip import assert_config_roundtrip, assert_keras_roundtrip
from scale_utils import assert_unit, layer_stds, normal


def np_(x):
    return ops.convert_to_numpy(x)


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (ku.layers.TransformerEncoderBlock, {}),
        (
            ku.layers.TransformerDecoderBlock,
            dict(activation="silu", gated=True, normalization="rms_norm"),
        ),
    ],
)
def test_block_is_unit_scaled(cls, kwargs):
    block = cls(num_heads=4, intermediate_dim=512, **kwargs)
    out, (gx,), weights = layer_stds(block, normal((4, 128, 256), seed=5))
    assert_unit(out, "output")
    assert_unit(gx, "input grad", tol=0.2)
    # Predicted weight-gradient stds. Every tensor inside a residual branch sees the stream's
    # unit gradient (`ops.residual`: `residual_add` scales forward only); the projections use
    # `to_output_scale`, so a Dense's input gradient is `sqrt(fan_out / fan_in)` and a scaled
    # activation's gradient is `fwd / bwd` (its SCALES), not unit. With d = 256 (hidden),
    # I = 512 (intermediate), r = sqrt(d / I) (the down projection's input gradient) and g the
    # rms of the scaled activation, `sqrt(1 + MEANS[act] ** 2)` (unit std, mean MEANS[act]):
    # - down kernel: its input's rms times the unit gradient: g (plain), g * 1 (gated: the
    #   product of the activation and an independent unit `up` has rms g);
    # - plain up kernel: r * fwd / bwd (the activation's gradient at the down's input grad);
    # - gated: `h = act(gate(x)) * up(x)`, so up's gradient is r * g (the gradient times the
    #   activation) and gate's r * fwd / bwd (the gradient times `up`, unit, through act);
    # - the MLP branch's input gradient: each of its input projections (d -> I) returns
    #   `sqrt(I / d)` times its output gradient: fwd / bwd (plain), `sqrt(g^2 + (fwd / bwd)^2)`
    #   (gated: gate's and up's add); the norm before it passes it on (x has unit rms);
    # - value/output kernels: the gradient on the stream between the two branches,
    #   `sqrt(a^2 G^2 + b^2)` with `(a, b) = residual_coefficients(tau_mlp)` and G the MLP
    #   branch's input gradient (1.16 gated, measured 1.17 and 1.18);
    # each within 10% (measured within 3%);
    # - query/key kernels: about mult / sqrt(key_dim) = 0.125 (ops.attention's docstring);
    #   self-attention's shared input raises it (0.14 to 0.16 measured): [0.8, 1.3] times.
    from keras_unitscale.ops.activations import MEANS, SCALES
    from keras_unitscale.ops.residual import residual_coefficients

    act = "silu" if kwargs.get("gated") else "gelu"
    fwd, bwd = SCALES[act]
    g, r = (1 + MEANS[act] ** 2) ** 0.5, (256 / 512) ** 0.5
    if kwargs.get("gated"):
        want = {"mlp/down/kernel": g, "mlp/up/kernel": r * g, "mlp/gate/kernel": r * fwd / bwd}
        branch_input_grad = (g**2 + (fwd / bwd) ** 2) ** 0.5
    else:
        want = {"mlp/down/kernel": g, "mlp/up/kernel": r * fwd / bwd}
        branch_input_grad = fwd / bwd
    a, b = residual_coefficients(block.tau["mlp"])
    stream = (a**2 * branch_input_grad**2 + b**2) ** 0.5
    want.update({"value_kernel": stream, "attention_output_kernel": stream})
    assert len(weights) == 4 + len(want) - 2
    for path, s in weights.items():
        if "query" in path or "key_kernel" in path:
            assert 0.8 * 64**-0.5 <= s <= 1.3 * 64**-0.5, (path, s)
            continue
        (expected,) = [w for suffix, w in want.items() if path.endswith(suffix)]
        assert abs(s / expected - 1) <= 0.1, (path, s, expected)


def test_residual_taus_follow_the_depth_rule():
    shape, enc_shape = (2, 8, 16), (2, 5, 12)
    rule = ku.ops.transformer_residual_taus(3, residual_mult=0.5, residual_attn_ratio=2.0)
    block = ku.layers.TransformerEncoderBlock(
        2, 32, layer_index=2, num_layers=3, residual_mult=0.5, residual_attn_ratio=2.0
    )
    block.build(shape)
    assert (block.tau["attention"], block.tau["mlp"]) == pytest.approx(rule[2])
    decoder = ku.layers.TransformerDecoderBlock(2, 32, layer_index=1, num_layers=3)
    decoder.build(shape, enc_shape)
    assert tuple(decoder.tau[k] for k in ("attention", "cross_attention", "mlp")) == (
        pytest.approx(ku.ops.decoder_residual_taus(3)[1])
    )
    explicit = ku.layers.TransformerDecoderBlock(2, 32, tau_attn=0.3, tau_mlp=0.2)
    explicit.build(shape, enc_shape)
    assert explicit.tau == {"attention": 0.3, "mlp": 0.2, "cross_attention": 0.3}


def test_encoder_padding_does_not_leak():
    block = ku.layers.TransformerEncoderBlock(2, 32)
    x = normal((2, 8, 16), seed=1)
    y = x.copy()
    y[:, 6:] = 9.0
    mask = np.array([[1] * 6 + [0] * 2] * 2, bool)
    out_x, out_y = (np_(block(t, padding_mask=mask)) for t in (x, y))
    np.testing.assert_allclose(out_x[:, :6], out_y[:, :6], atol=1e-5)


def test_encoder_reads_keras_masks():
    ids = keras.Input((None,), dtype="int32")
    h = ku.layers.TokenAndPositionEmbedding(30, 8, 16, mask_zero=True)(ids)
    out = ku.layers.TransformerEncoderBlock(2, 32)(h)
    model = keras.Model(ids, out)
    a = np.array([[4, 5, 6, 0, 0, 0, 0, 0]])
    assert out._keras_mask is not None
    # Padding id 0 is masked: the real tokens' outputs match an explicit padding mask.
    emb, block = model.layers[1], model.layers[2]
    x = ops.convert_to_tensor(np_(emb(a)))
    expected = np_(block(x, padding_mask=a != 0))
    np.testing.assert_allclose(np_(model(a))[:, :3], expected[:, :3], atol=1e-5)


def test_decoder_is_causal():
    block = ku.layers.TransformerDecoderBlock(2, 32, rotary_max_wavelength=1000)
    x = normal((2, 8, 16), seed=2)
    y = x.copy()
    y[:, 5:] = -4.0
    out_x, out_y = np_(block(x)), np_(block(y))
    np.testing.assert_allclose(out_x[:, :5], out_y[:, :5], atol=1e-5)
    assert np.abs(out_x[:, 5:] - out_y[:, 5:]).max() > 1e-2


def test_decoder_cached_decoding_matches_full_pass():
    block = ku.layers.TransformerDecoderBlock(2, 32, key_dim=8, rotary_max_wavelength=1000)
    x, enc = normal((2, 8, 16), seed=3), normal((2, 5, 12), seed=4)
    enc_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
    full = np_(block(x, enc, encoder_padding_mask=enc_mask))
    self_cache = ops.zeros((2, 2, 8, 2, 8))
    cross_cache = ops.zeros((2, 2, 5, 2, 8))
    out, self_cache, cross_cache = block(
        x[:, :2], enc, encoder_padding_mask=enc_mask,
        self_attention_cache=self_cache, self_attention_cache_update_index=0,
        cross_attention_cache=cross_cache, cross_attention_cache_update_index=0,
    )
    steps = [np_(out)]
    for t in range(2, 8):
        out, self_cache, cross_cache = block(
            x[:, t : t + 1], enc, encoder_padding_mask=enc_mask,
            self_attention_cache=self_cache, self_attention_cache_update_index=t,
            cross_attention_cache=cross_cache, cross_attention_cache_update_index=None,
        )
        steps.append(np_(out))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-4)


def test_roundtrips(tmp_path):
    encoder = ku.layers.TransformerEncoderBlock(
        2, 32, key_dim=8, dropout=0.1, normalization="rms_norm", layer_index=1, num_layers=2,
        residual_mult=0.7, attention_mult=2.0, use_bias=True, rotary_max_wavelength=100,
        name="enc",
    )
    clone = assert_config_roundtrip(encoder)
    assert clone.layer_index == 1 and clone.rotary_max_wavelength == 100
    assert_keras_roundtrip(encoder, normal((2, 8, 16)), tmp_path)
    decoder = ku.layers.TransformerDecoderBlock(
        2, 32, activation="silu", gated=True, tau_attn=0.5, tau_mlp=0.4, tau_cross=0.3,
        name="dec",
    )
    assert assert_config_roundtrip(decoder).tau_cross == 0.3
    assert_keras_roundtrip(decoder, [normal((2, 8, 16)), normal((2, 5, 12))], tmp_path)


def test_stack_trains_under_xla():
    vocab, length, width, layers = 16, 12, 32, 2
    ids = keras.Input((length,), dtype="int32")
    x = ku.layers.TokenAndPositionEmbedding(vocab, length, width)(ids)
    for i in range(layers):
        x = ku.layers.TransformerDecoderBlock(
            4, 64, layer_index=i, num_layers=layers, normalization="rms_norm"
        )(x)
    logits = ku.layers.Dense(vocab, readout=True)(x)
    model = keras.Model(ids, logits)
    model.compile(
        optimizer=keras.optimizers.Adam(0.02),
        loss=ku.losses.SparseCategoricalCrossentropy(),
        jit_compile=True,
    )
    # Next-token prediction on counting sequences: start + t (mod vocab).
    rng = np.random.default_rng(0)
    seqs = (rng.integers(0, vocab, (512, 1)) + np.arange(length + 1)) % vocab
    history = model.fit(seqs[:, :-1], seqs[:, 1:], batch_size=32, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.3 * losses[0], losses


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_heads=0, intermediate_dim=8), "num_heads"),
        (dict(num_heads=2, intermediate_dim=-1), "intermediate_dim"),
        (dict(num_heads=2, intermediate_dim=8, key_dim=0), "key_dim"),
        (dict(num_heads=2, intermediate_dim=8, normalization="batch"), "normalization"),
        (dict(num_heads=2, intermediate_dim=8, layer_index=3, num_layers=3), "layer_index"),
        (dict(num_heads=2, intermediate_dim=8, tau_attn=0.5), "tau_attn"),
        (dict(num_heads=2, intermediate_dim=8, tau_attn=0.5, tau_mlp=0.5, num_layers=2),
         "not both"),
        (dict(num_heads=2, intermediate_dim=8, residual_mult=0.0), "residual_mult"),
        (dict(num_heads=2, intermediate_dim=8, dropout=-0.1), "dropout"),
        (dict(num_heads=2, intermediate_dim=8, activation="bogus"), "activation"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ku.layers.TransformerEncoderBlock(**kwargs)


def test_bad_inputs_raise():
    block = ku.layers.TransformerDecoderBlock(2, 32)
    x = normal((2, 8, 16))
    with pytest.raises(ValueError, match="decoder_sequence"):
        ku.layers.TransformerDecoderBlock(2, 16)(x[0])
    with pytest.raises(ValueError, match="padding mask must have shape"):
        block(x, decoder_padding_mask=np.ones((2, 8, 8), bool))
    with pytest.raises(ValueError, match="attention mask must have shape"):
        block(x, decoder_attention_mask=np.ones((8, 8), bool))
    with pytest.raises(ValueError, match="without cross-attention"):
        block(x, normal((2, 5, 12)))
    with pytest.raises(ValueError, match="`tau_cross` needs"):
        ku.layers.TransformerDecoderBlock(2, 16, tau_cross=0.5)
    with pytest.raises(ValueError, match="smaller than `num_heads`"):
        ku.layers.TransformerEncoderBlock(32, 8)(x)
