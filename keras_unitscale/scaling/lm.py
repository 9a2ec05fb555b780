"""Language-model runs for a scaling sweep: character LMs on our corpora, one cell per run.

A cell is `{"model", "size", "tokens", "seed"}`: `model` is `"transformer"` (a
`TransformerDecoderBackbone`, head size 32, MLP 4 x width) or `"mlp"` (an `MLPBackbone`,
window 8), `size` a name of `SIZES[model]`, `tokens` the training tokens. `train_cell` builds
the `CausalLM` (tied readout) with the seed, trains it with `keras_unitscale.optimizers.Adam`
(u-muP's per-weight rates; a 10% linear warm-up, then cosine decay to 10% of the base rate)
on `tokens / (batch_size * sequence_length)` batches of windows drawn at random from the
training text, and reports the mean cross-entropy (nats per character) on fixed held-out
windows of the validation text.
"""

import collections
import functools
import math
import time

import numpy as np

SIZES = {
    "transformer": {
        "w16": dict(hidden_dim=16, num_layers=2),
        "w32": dict(hidden_dim=32, num_layers=2),
        "w64": dict(hidden_dim=64, num_layers=2),
        "w96": dict(hidden_dim=96, num_layers=2),
        "w128": dict(hidden_dim=128, num_layers=2),
        "w192": dict(hidden_dim=192, num_layers=2),
        "w256": dict(hidden_dim=256, num_layers=2),
    },
    "mlp": {
        "h16": dict(hidden_dim=16),
        "h32": dict(hidden_dim=32),
        "h64": dict(hidden_dim=64),
        "h96": dict(hidden_dim=96),
        "h128": dict(hidden_dim=128),
        "h192": dict(hidden_dim=192),
        "h256": dict(hidden_dim=256),
    },
    "tiny": {  # for tests
        "t4": dict(hidden_dim=4),
        "t8": dict(hidden_dim=8),
    },
}
"""`{model: {size name: backbone arguments}}` of the runs a sweep can make."""

CORPORA = ("peoples_daily", "python_docs")
MLP_WINDOW = 8


@functools.lru_cache(maxsize=4)
def load_char_corpus(corpus="peoples_daily", vocabulary_size=2000):
    """`(train_ids, val_ids)`: a corpus of `keras_unitscale.datasets.lm_corpora` as character
    ids, the `vocabulary_size - 1` most frequent training characters numbered from 1 and the
    rest 0 (unknown, also the padding id); lines joined with newlines."""
    if corpus not in CORPORA:
        raise ValueError(f"`corpus` must be one of {list(CORPORA)}; received {corpus!r:.80}.")
    from keras_unitscale.datasets import lm_corpora

    load = lm_corpora.load_peoples_daily if corpus == "peoples_daily" else (
        lm_corpora.load_python_docs)
    train, val, _ = load()
    train_text, val_text = "\n".join(train), "\n".join(val)
    common = [c for c, _ in collections.Counter(train_text).most_common(vocabulary_size - 1)]
    ids = {c: i + 1 for i, c in enumerate(common)}

    def encode(text):
        return np.array([ids.get(c, 0) for c in text], np.int32)

    return encode(train_text), encode(val_text)


def windows(ids, count, length, seed):
    """`[count, length + 1]` windows of `ids` at offsets drawn with `seed`."""
    if len(ids) < length + 2:
        raise ValueError(
            f"The text has {len(ids)} tokens, too few for windows of {length + 1}."
        )
    starts = np.random.default_rng(seed).integers(0, len(ids) - length - 1, size=count)
    return ids[starts[:, None] + np.arange(length + 1)]


def build_causal_lm(model, size, vocabulary_size, sequence_length):
    """The untrained `CausalLM` of a cell (the caller seeds Keras first)."""
    import keras_unitscale as ku

    if model not in SIZES:
        raise ValueError(f"`model` must be one of {sorted(SIZES)}; received {model!r:.80}.")
    if size not in SIZES[model]:
        raise ValueError(
            f"`size` must be one of {sorted(SIZES[model])} for model {model!r}; received "
            f"{size!r:.80}."
        )
    arguments = SIZES[model][size]
    width = arguments["hidden_dim"]
    if model == "transformer":
        backbone = ku.models.TransformerDecoderBackbone(
            vocabulary_size=vocabulary_size, num_layers=arguments["num_layers"],
            num_heads=max(1, width // 32), hidden_dim=width, intermediate_dim=4 * width,
            max_sequence_length=sequence_length,
        )
    else:
        backbone = ku.models.MLPBackbone(
            vocabulary_size=vocabulary_size, hidden_dim=width, window=MLP_WINDOW,
        )
    return ku.models.CausalLM(backbone, tie_weights=True)


def count_parameters(task):
    """`(all, non-embedding)` parameter counts: the second leaves out the token and position
    tables (Kaplan et al. 2020's N; the tied readout is the token table)."""
    from keras_unitscale.layers._weights import role_of

    total = sum(int(np.prod(w.shape)) for w in task.trainable_weights)
    embedding = 0
    for w in task.trainable_weights:
        role = role_of(w)
        if role is not None and role.role == "embedding":
            embedding += int(np.prod(w.shape))
    return total, total - embedding


def learning_rate_schedule(base_rate, steps):
    """Linear warm-up over 10% of `steps`, then cosine decay to 10% of `base_rate`."""
    import keras

    warmup = max(1, steps // 10)
    return keras.optimizers.schedules.CosineDecay(
        0.0, max(1, steps - warmup), alpha=0.1, warmup_target=base_rate, warmup_steps=warmup,
    )


def train_cell(cell, corpus="peoples_daily", vocabulary_size=2000, batch_size=16,
               sequence_length=64, learning_rate=1.0, eval_windows=256, data=None):
    """Trains the cell's model and returns its measured fields (see the module).

    `data` replaces the corpus with `(train_ids, val_ids)` (for tests).
    """
    import keras

    import keras_unitscale as ku

    train_ids, val_ids = data if data is not None else load_char_corpus(corpus, vocabulary_size)
    tokens, seed = int(cell["tokens"]), int(cell["seed"])
    per_step = batch_size * sequence_length
    steps = max(1, math.ceil(tokens / per_step))
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    task = build_causal_lm(cell["model"], cell["size"], vocabulary_size, sequence_length)
    task.compile(optimizer=ku.optimizers.Adam(learning_rate_schedule(learning_rate, steps)))
    train = windows(train_ids, steps * batch_size, sequence_length, seed=1000 + seed)
    held_out = windows(val_ids, eval_windows, sequence_length, seed=12345)

    def split(w):
        x = {"token_ids": w[:, :-1], "padding_mask": np.ones_like(w[:, :-1])}
        return x, w[:, 1:]

    x, y = split(train)
    history = task.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    x, y = split(held_out)
    val_loss = task.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)["loss"]
    params, non_embedding = count_parameters(task)
    return {
        "params": params,
        "non_embedding_params": non_embedding,
        "flops": 6 * params * steps * per_step,
        "steps": steps,
        "batch_size": batch_size,
        "sequence_length": sequence_length,
        "learning_rate": learning_rate,
        "train_loss": float(history.history["loss"][-1]),
        "val_loss": float(val_loss),
        "wall_time_s": round(time.perf_counter() - start, 3),
        "corpus": "custom" if data is not None else corpus,
        "backend": keras.backend.backend(),
    }


def grid_cells(models, sizes, tokens, seeds=(0,)):
    """The cells of a sweep, `models x sizes x tokens x seeds`, the models interleaved and the
    smallest runs first (a sweep cut short has every model's small runs).

    `sizes` maps each model to its size names, smallest first (or is one list for all).
    """
    names = {m: list(sizes[m] if isinstance(sizes, dict) else sizes) for m in models}
    cells = []
    for seed in seeds:
        for i in range(max(len(v) for v in names.values())):
            for count in tokens:
                for model in models:
                    if i < len(names[model]):
                        cells.append({"model": model, "size": names[model][i],
                                      "tokens": int(count), "seed": int(seed)})
    return cells
