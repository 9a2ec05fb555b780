"""Helpers the task preprocessors share: argument checks, weights, ids back to text."""

import keras
import numpy as np

try:  # TensorFlow is only needed inside `tf.data` / `tf.function`.
    import tensorflow as tf
except ImportError:  # pragma: no cover
    tf = None


def check_tokenizer(tokenizer, name="tokenizer"):
    """Checks that `tokenizer` is a tokenizer; its vocabulary may still be loading."""
    missing = [attr for attr in ("tokenize", "detokenize") if not hasattr(tokenizer, attr)]
    if tokenizer is None or missing:
        raise TypeError(
            f"`{name}` must be a tokenizer such as `keras_unitscale.tokenizers.JiebaTokenizer`. "
            f"Received: {tokenizer!r:.80}"
        )
    return tokenizer


def check_special_ids(tokenizer, name="tokenizer"):
    """At build time: the ids the packers need must exist (the vocabulary is set)."""
    absent = [
        attr
        for attr in ("pad_token_id", "start_token_id", "end_token_id")
        if getattr(tokenizer, attr, None) is None
    ]
    if absent:
        raise ValueError(
            f"`{name}` has no {', '.join(absent)}: set its vocabulary (e.g. build it with "
            "`from_corpus`) before using the preprocessor."
        )


def check_length(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}. Received: {value!r}")
    return int(value)


def check_text(x, name):
    """Eager-path check that `x` is text, so errors name the argument, not a packer internal."""
    if x is None:
        raise TypeError(f"`{name}` must be a string or a batch of strings; received None.")
    if isinstance(x, (int, float, np.number)) or (
        isinstance(x, np.ndarray) and x.dtype.kind not in "USO"
    ):
        raise TypeError(f"`{name}` must be a string or a batch of strings; received {x!r:.80}.")


def keep_last(ids, count):
    """The last `count` ids of each tokenized prompt: a ragged or dense batch, one prompt's
    ids, or Python lists (what a tokenizer returns on either workflow)."""
    if hasattr(ids, "row_splits") or hasattr(ids, "shape") and len(ids.shape) == 2:
        return ids[:, -count:]
    if hasattr(ids, "shape"):
        return ids[-count:]
    return [row[-count:] for row in ids]


def to_weights(mask, use_tf):
    """Boolean padding mask -> float32 sample weights, in the path's own tensor type."""
    return tf.cast(mask, "float32") if use_tf else keras.ops.cast(mask, "float32")


def strip_ids_python(token_ids, padding_mask, end_id, drop_ids):
    """Eager: rows of kept ids, cut at the first end token, minus padding and `drop_ids`."""
    ids = np.asarray(
        keras.ops.convert_to_numpy(token_ids) if keras.ops.is_tensor(token_ids) else token_ids
    )
    if ids.dtype.kind not in "iu":
        raise TypeError(f"`token_ids` must be integer ids; received dtype {ids.dtype}.")
    unbatched = ids.ndim == 1
    ids = ids.reshape(1, -1) if unbatched else ids
    if padding_mask is None:
        mask = np.ones(ids.shape, dtype=bool)
    else:
        mask = (
            np.asarray(
                keras.ops.convert_to_numpy(padding_mask)
                if keras.ops.is_tensor(padding_mask)
                else padding_mask
            )
            .astype(bool)
            .reshape(ids.shape)
        )
    rows = []
    for row, keep in zip(ids.tolist(), mask.tolist()):
        kept = []
        for token, k in zip(row, keep):
            if token == end_id:
                break
            if k and token not in drop_ids:
                kept.append(token)
        rows.append(kept)
    return rows, unbatched


def strip_ids_tf(token_ids, padding_mask, end_id, drop_ids):
    """In-graph version of `strip_ids_python`; returns a `tf.RaggedTensor` batch."""
    ids = tf.convert_to_tensor(token_ids)
    unbatched = ids.shape.rank == 1
    if unbatched:
        ids = ids[tf.newaxis]
    keep = tf.ones_like(ids, dtype=tf.bool)
    if padding_mask is not None:
        keep = tf.reshape(tf.cast(padding_mask, tf.bool), tf.shape(ids))
    before_end = tf.math.cumsum(tf.cast(tf.equal(ids, end_id), tf.int32), axis=-1) == 0
    keep = keep & before_end
    for token in drop_ids:
        keep = keep & tf.not_equal(ids, token)
    return tf.ragged.boolean_mask(ids, keep), unbatched


def ids_to_text(tokenizer, token_ids, padding_mask=None, use_tf=False):
    """Generated ids -> text: stop at the first end token, drop padding and special tokens."""
    special = {
        getattr(tokenizer, attr, None)
        for attr in ("pad_token_id", "start_token_id", "cls_token_id")
    } - {None}
    if use_tf:
        rows, unbatched = strip_ids_tf(token_ids, padding_mask, tokenizer.end_token_id, special)
        texts = tokenizer.detokenize(rows)
        return texts[0] if unbatched else texts
    rows, unbatched = strip_ids_python(token_ids, padding_mask, tokenizer.end_token_id, special)
    texts = tokenizer.detokenize(rows)
    if tf is not None and tf.is_tensor(texts):
        texts = texts.numpy().tolist()  # Some KerasHub tokenizers return tf tensors eagerly.
    texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts]
    return texts[0] if unbatched else texts
