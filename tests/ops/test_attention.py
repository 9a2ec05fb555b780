import math

import numpy as np
import pytest
from keras import ops

from keras_unitscale import ops as uops
from keras_unitscale.backend import vjp
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
    # Query/key gradients start at about mult / sqrt(d_head) (see the module docstring:
    # `dq_i = mult / d_head * s_i * sum_j p_ij (g_i . v_j - <g_i . v>) k_j`, where the
    # output scale s_i undoes the 1 / sqrt(n_i) of the probability-weighted sum), causal or
    # not (measured 0.122 causal, 0.125 not), within 10%: a 20% error in the logit scale
    # or the output scale fails.
    for g, name in ((gq, "query"), (gk, "key")):
        assert abs(g / D**-0.5 - 1) < 0.1, f"{name} grad std {g} vs mult / sqrt(d)"


def test_dropout_on_probabilities_keeps_unit_scale():
    q, k, v = qkv()
    out, (_, _, gv) = fn_stds(
        lambda q, k, v: uops.dot_product_attention(q, k, v, dropout_rate=0.3, seed=1),
        q, k, v, seed=99,
    )
    assert_unit(out, "output with dropout")
    assert_unit(gv, "value grad with dropout")
    # The dropout really drops: with keep mask m (P(m=1) = 0.7), the change of the output,
    # `s sum_j (m_j / sqrt(0.7) - 1) p_j v_j`, has variance `s^2 sum_j p_j^2 E[(m / sqrt(0.7)
    # - 1)^2]` = 1 * (0.7 (0.7 ** -0.5 - 1) ** 2 + 0.3) = 0.327 (std 0.572) for a unit output.
    dropped = ops.convert_to_numpy(uops.dot_product_attention(q, k, v, dropout_rate=0.3, seed=1))
    change = float(np.std(dropped - ops.convert_to_numpy(uops.dot_product_attention(q, k, v))))
    want = (0.7 * (0.7**-0.5 - 1) ** 2 + 0.3) ** 0.5
    assert abs(change / want - 1) < 0.1, f"output change std {change:.3f}, expected {want:.3f}"


def test_scale_limits():
    # Uniform attention (tiny mult) over n keys: sqrt(n); one key: 1.
    for n in (1, 7, S):
        assert uops.attention_output_scale(n, D, mult=1e-4) == pytest.approx(n**0.5, rel=1e-6)
    # Sharp attention (large mult) tends to one-hot: scale 1.
    assert uops.attention_output_scale(S, D, mult=1e4) == pytest.approx(1.0, abs=1e-3)
    # Per-query counts as a tensor give the same numbers; a count of 0 counts as 1.
    counts = ops.convert_to_tensor(np.array([0.0, 1.0, 7.0, S], "float32"))
    got = ops.convert_to_numpy(uops.attention_output_scale(counts, D))
    want = [uops.attention_output_scale(n, D) for n in (1, 1, 7, S)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(ValueError, match="num_keys"):
        uops.attention_output_scale(0, D)


def test_each_causal_row_is_unit():
    # The scale follows the keys each row sees (t + 1), so every row is unit, not only their
    # mean: one scale for all rows (sqrt(S / H_S) = 4.85) would leave the first rows near
    # 4.8 and the last near 0.43.
    q, k, v = qkv()
    out = ops.convert_to_numpy(uops.dot_product_attention(q, k, v, is_causal=True))
    rows = out.transpose(1, 0, 2, 3).reshape(S, -1).std(-1)
    for part in np.split(rows, 8):  # 16 rows, 4096 values each
        assert_unit(float(np.sqrt(np.mean(part**2))), "rows of the causal output")


def test_attended_keys_counts_what_the_mask_allows():
    mask = np.ones((3, 1, 1, 6), bool)
    mask[1, ..., 4:] = False
    mask[2, ..., :2] = False  # left padding
    counts = ops.convert_to_numpy(uops.attended_keys(ops.convert_to_tensor(mask), True, 6, 6))
    np.testing.assert_array_equal(
        counts[..., 0, 0], [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 4, 4], [0, 0, 1, 2, 3, 4]]
    )
    # The same counts from the general [batch, heads, T, S] reduction.
    full = ops.convert_to_tensor(np.broadcast_to(mask, (3, 1, 6, 6)))
    np.testing.assert_array_equal(
        ops.convert_to_numpy(uops.attended_keys(full, True, 6, 6)), counts
    )
    decoding = uops.attended_keys(ops.convert_to_tensor(mask), True, 1, 6, query_offset=4)
    np.testing.assert_array_equal(ops.convert_to_numpy(decoding).ravel(), [5, 4, 3])
    plain = uops.attended_keys(ops.convert_to_tensor(mask), False, 6, 6)
    np.testing.assert_array_equal(ops.convert_to_numpy(plain).ravel(), [6, 4, 4])
    one = uops.attended_keys(None, True, 1, 6, query_offset=3)
    np.testing.assert_array_equal(ops.convert_to_numpy(one).ravel(), [4])
    assert uops.attended_keys(None, False, 3, 6) == 6


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


def _mask_cases(s=12):
    rng = np.random.default_rng(3)
    pad = np.ones((B, 1, s), bool)
    pad[1, :, 8:], pad[2, :, 3:] = False, False
    full = rng.random((B, s, s)) < 0.7
    full[:, :, 0] = True
    heads = rng.random((B, H, s, s)) < 0.7
    return {
        "none": dict(),
        "causal": dict(is_causal=True),
        "padding": dict(mask=pad),
        "padding causal": dict(mask=pad, is_causal=True),
        "left padding causal": dict(mask=pad[:, :, ::-1].copy(), is_causal=True),
        "full mask": dict(mask=full),
        "per-head mask causal": dict(mask=heads, is_causal=True),
    }


@pytest.mark.parametrize("case", list(_mask_cases()))
def test_fused_path_equals_einsum_path(case):
    # Forward and all three gradients; full matmul precision is pinned in conftest.py.
    kwargs = _mask_cases()[case]
    q, k, v = qkv(s=12, d=8)
    bias = normal((H, 8), seed=7)
    g = normal(q.shape, seed=8)
    results = []
    for impl in ("fused", "einsum"):
        def f(q, k, v, b):
            return uops.dot_product_attention(q, k, v, value_bias=b, implementation=impl, **kwargs)

        out, pullback = vjp(f, q, k, v, bias)
        results.append([ops.convert_to_numpy(t) for t in (out, *pullback(g))])
    for name, a, b in zip(("output", "dq", "dk", "dv", "dbias"), *results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"{case}: {name}")


@pytest.mark.parametrize("impl", ["fused", "einsum"])
def test_fused_path_equals_einsum_when_decoding_from_an_offset(impl):
    q, k, v = qkv(s=10, d=8)
    pad = np.ones((B, 1, 10), bool)
    pad[0, :, 7:] = False
    full = uops.dot_product_attention(q, k, v, mask=pad, is_causal=True, implementation="einsum")
    one = uops.dot_product_attention(
        q[:, 5:6], k, v, mask=pad, is_causal=True, query_offset=5, implementation=impl
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(one)[:, 0], ops.convert_to_numpy(full)[:, 5], rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("impl", ["fused", "einsum"])
@pytest.mark.parametrize("causal", [False, True])
def test_padding_after_the_real_tokens_changes_nothing(impl, causal):
    # 7 real tokens padded by 0, 9 or 57 random ones (queries and keys), masked as padding.
    real = 7
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((2, real, H, 8)).astype("float32") for _ in range(3))
    outs = []
    for n in (0, 9, 57):
        padded = [
            np.concatenate([t, 50 * rng.standard_normal((2, n, H, 8)).astype("float32")], 1)
            for t in (q, k, v)
        ]
        mask = np.arange(real + n)[None, None, :] < real
        mask = np.broadcast_to(mask, (2, 1, real + n))
        out = uops.dot_product_attention(*padded, mask=mask, is_causal=causal, implementation=impl)
        outs.append(ops.convert_to_numpy(out)[:, :real])
    for out in outs[1:]:
        np.testing.assert_allclose(out, outs[0], rtol=1e-5, atol=1e-6)


def test_cross_attention_ignores_padded_keys():
    # A short target attending to a source of 5 real keys padded to 5, 16 or 40.
    rng = np.random.default_rng(6)
    q = rng.standard_normal((2, 3, H, 8)).astype("float32")
    k, v = (rng.standard_normal((2, 5, H, 8)).astype("float32") for _ in range(2))
    outs = []
    for n in (0, 11, 35):
        kk, vv = (np.concatenate([t, np.ones((2, n, H, 8), "float32")], 1) for t in (k, v))
        mask = np.broadcast_to(np.arange(5 + n) < 5, (2, 1, 5 + n))
        outs.append(ops.convert_to_numpy(uops.dot_product_attention(q, kk, vv, mask=mask)))
    for out in outs[1:]:
        np.testing.assert_allclose(out, outs[0], rtol=1e-5, atol=1e-6)


def test_implementation_is_checked():
    q, k, v = qkv(s=8, d=8)
    with pytest.raises(ValueError, match="`implementation` must be one of"):
        uops.dot_product_attention(q, k, v, implementation="flash")
    with pytest.raises(ValueError, match="cannot apply dropout"):
        uops.dot_product_attention(q, k, v, dropout_rate=0.1, implementation="fused")
