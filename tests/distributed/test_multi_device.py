"""Several devices give the gradients, losses and weights of one device with the same global
batch: `tf.distribute.MirroredStrategy` (TensorFlow) and `keras.distribution` (JAX).

Virtual devices must be set up before a backend starts, so each scenario runs in a fresh
process (`tf_mirrored.py`, `jax_distribution.py` beside this file) that sets its own backend
and prints its measurements. Each is slow (tracing and compiling for four devices), so it runs
once per `make test`: the TensorFlow scenario on the TensorFlow pass, the JAX one on the JAX
pass.
"""

import json
import os
import subprocess
import sys

import keras

HERE = os.path.dirname(os.path.abspath(__file__))
TOLERANCE = 1e-5  # float32; the measured differences are near 1e-6


def run_scenario(script, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("KERAS_BACKEND", None)  # the script sets its own
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"{script} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return json.loads(lines[-1][len("RESULT "):])


def assert_all_close(diffs, what):
    bad = {name: d for name, d in diffs.items() if not d <= TOLERANCE}
    assert not bad, f"{what} differ from one device's: {bad}"


def assert_same_losses(pairs, what):
    for one, several in pairs:
        assert abs(one - several) <= TOLERANCE * max(1.0, abs(one)), f"{what}: {pairs}"


def test_several_devices_match_one_device():
    """The TensorFlow scenario on the TensorFlow pass, the JAX scenario on the JAX pass."""
    if keras.backend.backend() == "tensorflow":
        check_mirrored_strategy()
    else:
        check_keras_distribution()


def check_mirrored_strategy():
    r = run_scenario("tf_mirrored.py")
    assert r["replicas"] == 4
    # The replica count the scales multiply local sizes by: 4 inside `strategy.run` only.
    assert r["replicas_seen"] == {"single": 1, "in_replica": [4] * 4, "cross_replica": 1}
    # Per-replica gradients of the loss `fit` differentiates, summed: the one-device gradient,
    # whether or not the replicas hold the same number of valid (unpadded) tokens.
    assert_all_close(r["balanced_grad_diff"], "Summed per-replica gradients (balanced)")
    assert_all_close(r["unbalanced_grad_diff"], "Summed per-replica gradients (unbalanced)")
    assert_same_losses(r["balanced_losses"], "Summed per-replica losses")
    # With unequal valid counts, Keras' loss under a strategy is the mean of per-replica
    # masked means, not the global masked mean (docs/distributed.md); the gradient above is
    # still exact because the unit-scaled logit gradient does not depend on the mean's count.
    assert max(abs(a - b) for a, b in r["unbalanced_losses"]) > 1e-4
    # model.fit: same losses, same weights after a few steps, and the steps did move them.
    assert_same_losses([r["fit_losses"]], "fit losses")
    assert_all_close(r["fit_weight_diff"], "Weights after fit")
    assert r["fit_moved"] > 0.1
    # The functional loss with a mask: unit per-token gradient and summable value.
    assert_all_close(r["functional_loss_grad_diff"], "Functional loss gradients")
    assert_same_losses([r["functional_losses"]], "Functional loss summed over replicas")
    assert r["traces"] == [1, 1]


def check_keras_distribution():
    r = run_scenario("jax_distribution.py")
    assert r["devices"] == 4
    for tag in ("data_parallel", "model_parallel"):
        assert r[f"{tag}_data_devices"] == 4, "the batch was not split over the devices"
        assert_all_close(r[f"{tag}_grad_diff"], f"{tag} gradients")
        assert_same_losses(r[f"{tag}_losses"], f"{tag} losses")
        assert_same_losses([r[f"{tag}_fit_losses"]], f"{tag} fit losses")
        assert_all_close(r[f"{tag}_weight_diff"], f"{tag} weights after fit")
    assert r["fit_moved"] > 0.1
    assert r["data_parallel_shardings"] == {}  # replicated
    # Fully sharded layout map on a (batch 2, model 2) mesh: every matrix of the attention
    # layers, MLPs and the embedding is split over both axes.
    shardings = r["model_parallel_shardings"]
    by_name = {path.split("/")[-2] + "/" + path.split("/")[-1]: s for path, s in shardings.items()}
    assert shardings["attention/query_kernel"] == "P('batch', 'model')"
    assert shardings["attention/attention_output_kernel"] == "P('model', 'batch')"
    assert shardings["attention/value_bias"] == "P('model',)"
    assert shardings["embedding/embeddings"] == "P('model', 'batch')"
    assert shardings["encoder_block/mlp/up/kernel"] == "P('batch', 'model')"
    assert shardings["encoder_block/mlp/down/kernel"] == "P('model', 'batch')"
    assert by_name["gate/kernel"] == "P('batch', 'model')"
    assert len(shardings) == 19, sorted(shardings)


def test_every_task_fits_raw_strings_under_a_strategy():
    """`tasks_fit.py`: TextClassifier (transformer), Seq2SeqLM and CausalLM under
    MirroredStrategy (TF) or DataParallel (JAX) on 2 devices, against one device."""
    backend = keras.backend.backend()
    r = run_scenario("tasks_fit.py", backend)
    assert r["replicas"] == 2
    tasks = {"classifier_transformer", "seq2seq_lm", "causal_lm"}
    assert tasks <= set(r)
    for task in tasks:
        result = r[task]
        assert_same_losses(list(zip(result["reference_losses"], result["losses"])), task)
        assert result["weight_diff"] <= TOLERANCE, (task, result)
        assert result["moved"] > 0.1, (task, result)  # the steps did train
