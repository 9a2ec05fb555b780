import math

import numpy as np
import pytest
from keras import ops

from keras_unitscale import ops as uops
from scale_utils import assert_unit, fn_stds, normal

B, S, H, D = 4, 128, 4, 64


def qkv(seed=10, s=S, d=D):
    return tuple(normal((B, s, H, d), seed=seed + i) for i in range(3))


@pytest.mark.parametrize("causal", [False, True])
def test_attention_is_unit_at_initialisation(causal):
    q, k, v = qkv()
    out, (gq, gk, gv) = fn_stds(
        lambda q, k, v: uops.dot_product_attention(q, k, v, is_causal=causal), q, k, v, seed=99
    )
    assert_unit(out, "output")
    assert_unit(gv, "value grad")
    # Query/key gradients start at about mult / sqrt(d_head) (see the module docstring),
    # within a factor 3 of Graphcore's ~S^-1/2.
    for g, name in ((gq, "query"), (gk, "key")):
        assert np.isfinite(g), name
        assert S**-0.5 / 3 < g < 3 * S**-0.5, f"{name} grad std {g}"
        if not causal:
            assert abs(g / D**-0.5 - 1) < 0.1, f"{name} grad std {g} vs mult / sqrt(d)"


def test_dropout_on_probabilities_keeps_unit_scale():
    q, k, v = qkv()
    out, (_, _, gv) = fn_stds(
        lambda q, k, v: uops.dot_product_attention(q, k, v, dropout_rate=0.3, seed=1),
        q, k, v, seed=99,
    )
    assert_unit(out, "output with dropout")
    assert_unit(gv, "value grad with dropout")


def test_scale_limits():
    # Uniform attention (tiny mult): sqrt(S) and sqrt(S / H_S).
    harmonic = sum(1.0 / t for t in range(1, S + 1))
    assert uops.attention_output_scale(S, D, mult=1e-4) == pytest.approx(S**0.5, rel=1e-6)
    causal = uops.attention_output_scale(S, D, mult=1e-4, causal=True)
    assert causal == pytest.approx((S / harmonic) ** 0.5, rel=1e-4)
    # Sharp attention (large mult) tends to one-hot: scale 1.
    assert uops.attention_output_scale(S, D, mult=1e4) == pytest.approx(1.0, abs=1e-3)
    # A run-time key length gives the same number.
    dynamic = uops.attention_output_scale(ops.convert_to_tensor(S), D, causal=True)
    assert float(dynamic) == pytest.approx(uops.attention_output_scale(S, D, causal=True))


def test_scale_tracks_simulated_softmax_as_attention_sharpens():
    rng = np.random.default_rng(0)
    for sigma in (0.5, 2.0, 4.0):
        x = rng.standard_normal((2000, S)) * sigma
        p = np.exp(x - x.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        measured = float(np.mean(np.sum(p**2, -1))) ** -0.5
        model = uops.attention_output_scale(S, D, mult=sigma * math.sqrt(D))
        assert 1 / 1.25 < model / measured < 1.25, (sigma, model, measured)


def test_padding_mask_ignores_masked_keys():
    q, k, v = qkv(s=16, d=8)
    mask = np.ones((B, 16, 16), bool)
    mask[:, :, 12:] = False
    out = uops.dot_product_attention(q, k, v, mask=mask)
    k2, v2 = k.copy(), v.copy()
    k2[:, 12:], v2[:, 12:] = 100.0, -100.0
    out2 = uops.dot_product_attention(q, k2, v2, mask=mask)
    np.testing.assert_allclose(ops.convert_to_numpy(out), ops.convert_to_numpy(out2), atol=1e-5)


def test_causal_output_ignores_later_keys_and_offset_matches_rows():
    q, k, v = qkv(s=16, d=8)
    full = ops.convert_to_numpy(uops.dot_product_attention(q, k, v, is_causal=True))
    k2, v2 = k.copy(), v.copy()
    k2[:, 9:], v2[:, 9:] = 5.0, 5.0
    changed = ops.convert_to_numpy(uops.dot_product_attention(q, k2, v2, is_causal=True))
    np.testing.assert_allclose(full[:, :9], changed[:, :9], atol=1e-5)
    # One query at position 6 against all 16 keys reproduces row 6 of the full pass.
    one = uops.dot_product_attention(q[:, 6:7], k, v, is_causal=True, query_offset=6)
    np.testing.assert_allclose(ops.convert_to_numpy(one)[:, 0], full[:, 6], atol=1e-5)


def test_scores_are_probabilities():
    q, k, v = qkv(s=16, d=8)
    out, scores = uops.dot_product_attention(q, k, v, is_causal=True, return_scores=True)
    scores = ops.convert_to_numpy(scores)
    assert scores.shape == (B, H, 16, 16)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(scores[0, 0], 1) == 0)


def test_bad_inputs_raise():
    q, k, v = qkv(s=8, d=8)
    with pytest.raises(ValueError, match="`query` must have rank 4"):
        uops.dot_product_attention(q[:, :, 0], k, v)
    with pytest.raises(ValueError, match="`mask` must have rank 3"):
        uops.dot_product_attention(q, k, v, mask=np.ones((8, 8), bool))
    with pytest.raises(ValueError, match="head dimension"):
        uops.dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="same length"):
        uops.dot_product_attention(q, k, v[:, :4])
    with pytest.raises(ValueError, match="dropout_rate"):
        uops.dot_product_attention(q, k, v, dropout_rate=1.0)


def test_decoder_residual_taus_give_equal_shares():
    taus = uops.decoder_residual_taus(3, residual_attn_ratio=2.0)
    # Replay the normalised stream: branch l adds tau_l^2 of the running variance.
    total, shares = 1.0, []
    for tau in [t for block in taus for t in block]:
        shares.append(tau**2 * total)
        total += tau**2 * total
    shares = np.array(shares).reshape(3, 3)
    np.testing.assert_allclose(shares[:, :2], 4 * shares[:, [2, 2]], rtol=1e-6)
    np.testing.assert_allclose(shares.sum(), 1.0, rtol=1e-6)  # residual_mult ** 2
    with pytest.raises(ValueError, match="num_blocks"):
        uops.decoder_residual_taus(0)
