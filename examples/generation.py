"""Chinese text generation: a unit-scaled causal transformer LM against a plain KerasHub GPT-2
of the same size, trained on the same characters for the same number of steps.

    python examples/generation.py              # unit-scaled CausalLM
    python examples/generation.py --plain      # keras_hub GPT2Backbone + GPT2CausalLM

Data: `keras_unitscale.datasets.load_peoples_daily()` (People's Daily, January 1998: 15,199 /
1,900 / 1,900 lines). Characters seen at least 3 times in the training split form the
vocabulary (the rest map to `[UNK]`). Each split's lines are wrapped in `[START] ... [END]`,
concatenated and cut into windows of `sequence_length + 1` characters
(`CausalLMPreprocessor.pack_dataset`), so every position is a real character: the validation
loss is the mean cross-entropy per character and its exponential the per-character perplexity.
Both models are fitted on the same windows in the same order, then continue a few prompts.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_unitscale.datasets import load_peoples_daily  # noqa: E402
from keras_unitscale.models import CausalLM  # noqa: E402
from keras_unitscale.models.backbones import TransformerDecoderBackbone  # noqa: E402
from keras_unitscale.preprocessors import CausalLMPreprocessor  # noqa: E402
from keras_unitscale.tokenizers import CharacterTokenizer  # noqa: E402

PROMPTS = ["中国", "今天", "经济", "我们要"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plain", action="store_true", help="a KerasHub GPT-2 of the same size")
    p.add_argument("--steps", type=int, default=600, help="training steps (batches)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--sequence-length", type=int, default=64)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--hidden-dim", type=int, default=128)
    p.add_argument("--intermediate-dim", type=int, default=512)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--min-frequency", type=int, default=3)
    p.add_argument("--val-windows", type=int, default=1024, help="validation windows scored")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="default: 3e-2 (unit-scaled AdamW) or 3e-3 (plain AdamW)")
    p.add_argument("--output-mult", type=float, default=8.0,
                   help="u-muP output (logit) multiplier of the unit-scaled model")
    p.add_argument("--max-length", type=int, default=None, help="generation length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="append the results as one JSON line here")
    p.add_argument("--save", default=None, help="save the trained model to this .keras path")
    return p.parse_args()


def unit_scaled_model(args, vocabulary_size):
    backbone = TransformerDecoderBackbone(
        vocabulary_size, num_layers=args.num_layers, num_heads=args.num_heads,
        hidden_dim=args.hidden_dim, intermediate_dim=args.intermediate_dim,
        max_sequence_length=args.sequence_length, dropout=args.dropout,
    )
    # Fitted on packed ids; the preprocessor is attached afterwards, for `generate`.
    model = CausalLM(backbone, output_mult=args.output_mult)
    # The recipe docs/results.md measured: Keras' AdamW, one rate for every weight (before
    # u-muP's per-weight rates became compile()'s default; retuning them is issue #16's).
    model.compile(optimizer=keras.optimizers.AdamW(args.learning_rate or 3e-2, weight_decay=0.0))
    return model


def plain_model(args, vocabulary_size):
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size, num_layers=args.num_layers, num_heads=args.num_heads,
        hidden_dim=args.hidden_dim, intermediate_dim=args.intermediate_dim,
        dropout=args.dropout, max_sequence_length=args.sequence_length,
    )
    model = keras_hub.models.GPT2CausalLM(backbone, preprocessor=None)
    model.compile(
        optimizer=keras.optimizers.AdamW(args.learning_rate or 3e-3, weight_decay=0.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        sampler="greedy",
    )
    return model


def windows(preprocessor, texts, seed=None):
    ds = preprocessor.pack_dataset(tf.data.Dataset.from_tensor_slices(list(texts)).batch(256))
    return ds.shuffle(50_000, seed=seed) if seed is not None else ds


def generate(args, model, preprocessor):
    length = args.max_length or args.sequence_length
    if not args.plain:
        model.preprocessor = preprocessor
        return model.generate(PROMPTS, max_length=length)
    x = preprocessor.generate_preprocess(PROMPTS, sequence_length=length)
    out = model.generate(x, stop_token_ids=[preprocessor.tokenizer.end_token_id])
    return preprocessor.generate_postprocess(out)


def main():
    args = parse_args()
    keras.utils.set_random_seed(args.seed)
    train_text, val_text, _ = load_peoples_daily(seed=args.seed)
    tokenizer = CharacterTokenizer.from_corpus(train_text, min_frequency=args.min_frequency)
    preprocessor = CausalLMPreprocessor(tokenizer, sequence_length=args.sequence_length)
    vocabulary_size = tokenizer.vocabulary_size()
    model = (plain_model if args.plain else unit_scaled_model)(args, vocabulary_size)
    name = "plain KerasHub GPT-2" if args.plain else "unit-scaled"
    print(f"{name}: {model.count_params():,} parameters, vocabulary {vocabulary_size}")

    train = windows(preprocessor, train_text, seed=args.seed).repeat().batch(args.batch_size)
    val = windows(preprocessor, val_text).take(args.val_windows).batch(args.batch_size).cache()
    epochs = 5
    start = time.time()
    history = model.fit(train, steps_per_epoch=max(1, args.steps // epochs), epochs=epochs,
                        validation_data=val, verbose=2)
    train_time = time.time() - start
    val_loss = float(history.history["val_loss"][-1])

    start = time.time()
    samples = generate(args, model, preprocessor)
    generate_time = time.time() - start
    for text in samples:
        print("  " + text)
    result = {
        "model": name, "backend": keras.config.backend(), "params": model.count_params(),
        "steps": max(1, args.steps // epochs) * epochs, "batch_size": args.batch_size,
        "sequence_length": args.sequence_length, "train_seconds": round(train_time, 1),
        "generate_seconds": round(generate_time, 1), "val_loss": round(val_loss, 4),
        "val_perplexity": round(float(np.exp(val_loss)), 2),
        "val_accuracy": round(float(history.history["val_accuracy"][-1]), 4),
        "samples": samples,
    }
    print(json.dumps(result, ensure_ascii=False))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result, ensure_ascii=False) + "\n")
    if args.save:
        model.save(args.save)


if __name__ == "__main__":
    main()
