"""TensorFlow: `tf.distribute.MirroredStrategy` on 4 logical CPUs against one device.

Run as a script (`python tests/distributed/tf_mirrored.py`); prints one `RESULT {...}` line.
Per global batch, the per-replica gradients of `model.compute_loss` (what `model.fit`
differentiates), summed over replicas, are compared with the single-device gradient; then the
weights and the loss after `model.fit` over `STEPS` batches. Padded data: with the same number
of valid tokens in each replica's share ("balanced") and with different numbers.
"""

import os
import sys

os.environ["KERAS_BACKEND"] = "tensorflow"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402
import tensorflow as tf  # noqa: E402

# Before anything initialises the runtime.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(C.NUM_DEVICES)]
)

import numpy as np  # noqa: E402


def replica_gradients(model, x, y):
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
    return loss, tape.gradient(loss, model.trainable_variables)


def shards(strategy, x, y):
    """The global batch split as `fit` splits it: replica `i` gets the `i`-th run of rows."""
    share = len(x) // strategy.num_replicas_in_sync

    def value_fn(context):
        rows = slice(context.replica_id_in_sync_group * share, None)
        rows = slice(rows.start, rows.start + share)
        return x[rows], {k: v[rows] for k, v in y.items()}

    return strategy.experimental_distribute_values_from_function(value_fn)


def functional_loss_check(strategy):
    """`ops.sparse_softmax_cross_entropy` with a mask, per replica against one device: the
    per-token logit gradients, and the value summed over replicas (each replica returns its
    share of the mean, as without a mask). Also the replica count seen in each context."""
    from keras_unitscale import ops as uops
    from keras_unitscale.backend import num_replicas_in_sync

    rng = np.random.default_rng(2)
    logits = rng.standard_normal((C.GLOBAL_BATCH, C.LENGTH, C.VOCAB)).astype("float32")
    labels = rng.integers(0, C.VOCAB, (C.GLOBAL_BATCH, C.LENGTH)).astype("int32")
    share = C.GLOBAL_BATCH // C.NUM_DEVICES
    # The same number of valid tokens in each replica's share, at random places.
    mask = np.concatenate([
        rng.permutation(np.arange(share * C.LENGTH) < 20).reshape(share, C.LENGTH)
        for _ in range(C.NUM_DEVICES)
    ])

    @tf.function
    def grads(logits, labels, mask):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = uops.sparse_softmax_cross_entropy(labels, logits, mask=mask)
        return loss, tape.gradient(loss, logits), tf.constant(num_replicas_in_sync())

    split = strategy.experimental_distribute_values_from_function(
        lambda ctx: tuple(
            a[ctx.replica_id_in_sync_group * share:(ctx.replica_id_in_sync_group + 1) * share]
            for a in (logits, labels, mask)
        )
    )
    loss_1, grad_1, replicas_1 = grads(logits, labels, mask)
    loss_n, grad_n, replicas_n = tf.function(lambda b: strategy.run(grads, args=b))(split)
    loss_n = sum(float(v) for v in strategy.experimental_local_results(loss_n))
    grad_n = np.concatenate([np.asarray(g) for g in strategy.experimental_local_results(grad_n)])
    with strategy.scope():
        cross_replica = num_replicas_in_sync()
    return {
        "functional_loss_grad_diff": C.max_differences([grad_1], [grad_n], ["logits"]),
        "functional_losses": [float(loss_1), loss_n],
        "replicas_seen": {
            "single": int(replicas_1),
            "in_replica": [int(r) for r in strategy.experimental_local_results(replicas_n)],
            "cross_replica": cross_replica,
        },
    }


def main():
    # Graph optimisation does not change what is compared and costs seconds per trace.
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(C.NUM_DEVICES)])
    assert strategy.num_replicas_in_sync == C.NUM_DEVICES

    single = C.build_model()
    C.compile_model(single)
    with strategy.scope():
        mirrored = C.build_model()
        C.compile_model(mirrored)
    initial = single.get_weights()
    mirrored.set_weights(initial)
    results = {"replicas": strategy.num_replicas_in_sync}

    # A few steps of model.fit from the same weights, on the same batches. (First, as it
    # also builds the loss trackers that the step functions below would otherwise create
    # while tracing, which makes `tf.function` trace twice.)
    x, y = C.make_data(balanced=True)
    kwargs = dict(batch_size=C.GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    results["fit_losses"] = (
        single.fit(x, y, **kwargs).history["loss"] + mirrored.fit(x, y, **kwargs).history["loss"]
    )
    results["fit_weight_diff"] = C.max_differences(
        single.get_weights(), mirrored.get_weights(), [v.path for v in single.weights]
    )
    results["fit_moved"] = float(
        max(np.max(np.abs(a - b)) for a, b in zip(initial, single.get_weights()))
    )

    # Gradients of `compute_loss`, batch by batch, at the initial weights: per replica inside
    # `strategy.run`, summed over replicas, against one device.
    single.set_weights(initial)
    mirrored.set_weights(initial)
    names = [v.path for v in single.trainable_variables]

    @tf.function
    def single_step(x, y):
        return replica_gradients(single, x, y)

    @tf.function
    def mirrored_step(batch):
        loss, grads = strategy.run(replica_gradients, args=(mirrored,) + tuple(batch))
        reduce = lambda t: strategy.reduce(tf.distribute.ReduceOp.SUM, t, axis=None)  # noqa: E731
        return reduce(loss), [reduce(g) for g in grads]

    for balanced in (True, False):
        tag = "balanced" if balanced else "unbalanced"
        x, y = C.make_data(balanced)
        grad_diff, losses = {}, []
        for step in range(C.STEPS):
            rows = slice(step * C.GLOBAL_BATCH, (step + 1) * C.GLOBAL_BATCH)
            xs, ys = x[rows], {k: v[rows] for k, v in y.items()}
            loss_1, grads_1 = single_step(xs, ys)
            loss_n, grads_n = mirrored_step(shards(strategy, xs, ys))
            for name, d in C.max_differences(grads_1, grads_n, names).items():
                grad_diff[name] = max(grad_diff.get(name, 0.0), d)
            losses.append((float(loss_1), float(loss_n)))
        results[f"{tag}_grad_diff"] = grad_diff
        results[f"{tag}_losses"] = losses
    results.update(functional_loss_check(strategy))
    results["traces"] = [
        f.experimental_get_tracing_count() for f in (single_step, mirrored_step)
    ]
    C.report(**results)


if __name__ == "__main__":
    main()
