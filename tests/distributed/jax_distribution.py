"""JAX: `keras.distribution` on 4 virtual CPU devices against one device.

Run as a script (`python tests/distributed/jax_distribution.py`); prints one `RESULT {...}`
line. For `DataParallel` (4 replicas) and for `ModelParallel` with our layout map on a
`(batch 2, model 2)` mesh, fully sharded: the gradients of the training loss (the function
`model.fit` differentiates) per global batch, and the weights and loss after `model.fit`
over `STEPS` batches, against the same model on one device. Padded data whose shares of a
batch hold different numbers of valid tokens; dropout on (JAX draws the same bits however
the batch is split).
"""

import contextlib
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
# Before JAX starts. Optimisation level 0 compiles about 3x faster; both sides use it.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
).strip()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402
import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_unitscale import distribution as kd  # noqa: E402

DROPOUT = 0.1


def gradient_fn(model):
    """Jitted `(weights, x, y) -> (loss, grads)` of the loss `fit` differentiates."""

    def loss_fn(trainable, non_trainable, metrics, optimizer, x, y):
        loss, _ = model.compute_loss_and_updates(
            trainable, non_trainable, metrics, x, y, None, training=True,
            optimizer_variables=optimizer,
        )
        return loss

    return jax.jit(jax.value_and_grad(loss_fn))


def run(dist, initial, data):
    """`(results, model)` of one configuration: `dist=None` is the single device."""
    with contextlib.nullcontext() if dist is None else dist.scope():
        model = C.build_model(DROPOUT)
        model.set_weights(initial)
        C.compile_model(model)
        x, y = data
        kwargs = dict(batch_size=C.GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
        history = model.fit(x, y, **kwargs).history["loss"]
        out = dict(fit_loss=history, weights=model.get_weights(), shardings={
            v.path: str(v.value.sharding.spec)
            for v in model.weights
            if any(a is not None for a in getattr(v.value.sharding, "spec", ()))
        })

        # Gradients at the initial weights, batch by batch.
        model.set_weights(initial)
        grad = gradient_fn(model)
        state = [
            [v.value for v in variables]
            for variables in (
                model.trainable_variables,
                model.non_trainable_variables,
                model.metrics_variables,
                model.optimizer.variables,
            )
        ]
        out["losses"], out["grads"] = [], []
        for step in range(C.STEPS):
            rows = slice(step * C.GLOBAL_BATCH, (step + 1) * C.GLOBAL_BATCH)
            xs, ys = x[rows], {k: v[rows] for k, v in y.items()}
            if dist is not None:  # split the batch as fit does
                put = lambda a: jax.device_put(  # noqa: E731
                    a, dist.get_data_layout(a.shape).backend_layout
                )
                xs, ys = put(xs), {k: put(v) for k, v in ys.items()}
                out["data_devices"] = len(xs.sharding.device_set)
            loss, g = grad(*state, xs, ys)
            out["losses"].append(float(loss))
            out["grads"].append([np.asarray(t) for t in g])
    return out, model


def main():
    assert len(jax.devices()) == C.NUM_DEVICES, jax.devices()
    data = C.make_data(balanced=False)
    initial = C.build_model(DROPOUT).get_weights()
    single, model = run(None, initial, data)
    names = [v.path for v in model.trainable_variables]
    all_names = [v.path for v in model.weights]
    results = {"devices": len(jax.devices())}
    configs = {
        "data_parallel": kd.data_parallel(),
        "model_parallel": kd.model_parallel(model_parallelism=2, fully_sharded=True),
    }
    for tag, dist in configs.items():
        out, _ = run(dist, initial, data)
        grad_diff = {}
        for g1, gn in zip(single["grads"], out["grads"]):
            for name, d in C.max_differences(g1, gn, names).items():
                grad_diff[name] = max(grad_diff.get(name, 0.0), d)
        results[f"{tag}_grad_diff"] = grad_diff
        results[f"{tag}_losses"] = list(zip(single["losses"], out["losses"]))
        results[f"{tag}_fit_losses"] = single["fit_loss"] + out["fit_loss"]
        results[f"{tag}_weight_diff"] = C.max_differences(
            single["weights"], out["weights"], all_names
        )
        results[f"{tag}_shardings"] = out["shardings"]
        results[f"{tag}_data_devices"] = out["data_devices"]
    results["fit_moved"] = float(
        max(np.max(np.abs(a - b)) for a, b in zip(initial, single["weights"]))
    )
    C.report(**results)


if __name__ == "__main__":
    main()
