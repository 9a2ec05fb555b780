import numpy as np
import pytest

from keras_unitscale import ops as uops
from keras_unitscale.backend import vjp
from scale_utils import assert_near, assert_unit, fn_stds, normal


def test_add_scales():
    a, b = normal((256, 1024)), normal((256, 1024), seed=2)
    out, (ga, gb) = fn_stds(uops.add, a, b)
    assert_unit(out, "output")
    assert_near(ga, 2**-0.5, 0.05, "grad a (to_output_scale)")
    out, (ga, gb) = fn_stds(lambda a, b: uops.add(a, b, constraint=None), a, b)
    assert_unit(ga, "grad a (unconstrained)")
    assert_unit(gb, "grad b (unconstrained)")


@pytest.mark.parametrize("tau", [0.2, 1.0, 3.0])
def test_residual_keeps_unit_stream_and_true_gradient(tau):
    x, w = normal((256, 512)), normal((512, 512), seed=2)

    def block(x, w):
        residual, skip = uops.residual_split(x, tau)
        return uops.residual_add(uops.linear(residual, w, constraint=None), skip, tau)

    out, (gx, gw) = fn_stds(block, x, w)
    assert_unit(out, "output")
    assert_unit(gx, "input grad")
    assert_unit(gw, "weight grad")

    # The gradient at x is exactly that of a * f(x) + b * x, with f's own backward scales.
    a, b = uops.residual_coefficients(tau)
    g = normal((256, 512), seed=5)
    _, pull = vjp(block, x, w)
    _, pull_f = vjp(lambda x, w: uops.linear(x, w, constraint=None), x, w)
    expected = a * np.asarray(pull_f(g)[0]) + b * g
    np.testing.assert_allclose(np.asarray(pull(g)[0]), expected, rtol=1e-4, atol=1e-5)


def test_depth_rule_gives_every_branch_its_share():
    num_blocks, ratio = 6, 0.5
    taus = uops.transformer_residual_taus(num_blocks, residual_mult=1.0, residual_attn_ratio=ratio)
    # Unroll the normalised stream: track each contribution's share of the final variance.
    shares = [1.0]
    for tau_attn, tau_mlp in taus:
        for tau in (tau_attn, tau_mlp):
            a, b = uops.residual_coefficients(tau)
            shares = [s * b * b for s in shares] + [a * a]
    assert sum(shares) == pytest.approx(1.0)
    attn, mlp = shares[1::2], shares[2::2]
    assert max(attn) == pytest.approx(min(attn))
    assert max(mlp) == pytest.approx(min(mlp))
    assert attn[0] / mlp[0] == pytest.approx(ratio**2)
    assert sum(attn) + sum(mlp) == pytest.approx(shares[0])  # residual_mult = 1


def test_bad_residual_arguments():
    with pytest.raises(ValueError, match="`tau` must be a non-negative number"):
        uops.residual_split(normal((2, 2)), -1.0)
    with pytest.raises(ValueError, match="`num_blocks` must be a positive integer"):
        uops.transformer_residual_taus(0)
