"""Smoke test of `benchmarks/low_precision.py --quick` on the current backend.

One tiny run (the plain Keras model with the FP8 matmul simulation, the code here that the
library does not test), the initial-gradient measurement of both models, the tables, the plot.
"""

import keras
import numpy as np
from scripts import load_script


def _script():
    return load_script("benchmarks/low_precision.py", "low_precision_benchmark")


def test_quick_run_writes_plot_and_tables(tmp_path, capsys):
    script = _script()
    results = script.main(
        ["--quick", "--steps", "2", "--runs", "plain/fp8", "--out-dir", str(tmp_path)]
    )
    out = capsys.readouterr().out
    backend = keras.backend.backend()
    assert (tmp_path / f"low_precision_{backend}.png").stat().st_size > 0
    assert set(results) == {"plain/fp8"}
    for r in results.values():
        steps = [s for s, _ in r["val"]]
        assert steps == [0, 2]
        assert np.all(np.isfinite([v for _, v in r["val"]]))
        assert r["nan_step"] is None
    assert "| FP8 sim., readout kept |" in out
    assert "| plain Keras |" in out  # the initial-gradient underflow table
    assert "benchmarks/low_precision.py --quick" in out  # the command
    assert keras.config.dtype_policy().name == "float32"  # the policy is restored


def test_plain_fp8_casts_dense_operands():
    script = _script()
    from keras_unitscale.ops import cast_to_format

    inputs = keras.Input((8,))
    dense = keras.layers.Dense(4, name="d")
    model = keras.Model(inputs, dense(inputs))
    x = np.random.default_rng(0).standard_normal((16, 8)).astype("float32") * 1.1
    assert script.simulate_fp8_plain(model) == ["d"]
    e4m3 = lambda t: np.asarray(cast_to_format(t, "e4m3"))  # noqa: E731
    expected = e4m3(x) @ e4m3(keras.ops.convert_to_numpy(dense.kernel))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x)), expected, rtol=1e-6, atol=1e-6
    )
