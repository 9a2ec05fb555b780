"""Chinese-to-English translation with a unit-scaled transformer encoder-decoder, against the
same network built from plain Keras / KerasHub layers.

    python examples/translation.py              # unit-scaled Seq2SeqLM
    python examples/translation.py --plain      # keras_hub TransformerEncoder/Decoder

Data: `keras_unitscale.datasets.load_zh_en_pairs()` (HSK graded sentences: 3,416 / 427 / 427
pairs, no sentence shared between splits). Chinese is split into characters, English into
WordPiece pieces learnt on the training split; both models see the very same ids. Each model
trains for the same number of steps, then translates the held-out test split greedily
(ours with `Seq2SeqLM.generate`, one compiled XLA loop with a decoder cache; the plain model by
recomputing the decoder for every token), scored with sacrebleu's BLEU and chrF (lowercased:
the WordPiece vocabulary is lowercase). The validation per-token cross-entropy is the mean
over real target tokens only.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import sacrebleu  # noqa: E402

from keras_unitscale.datasets import load_zh_en_pairs  # noqa: E402
from keras_unitscale.models import Seq2SeqBackbone, Seq2SeqLM  # noqa: E402
from keras_unitscale.preprocessors import Seq2SeqLMPreprocessor  # noqa: E402
from keras_unitscale.tokenizers import (  # noqa: E402
    CharacterTokenizer,
    tidy_detokenized,
    train_word_piece,
)

SAMPLES = ["我喜欢喝茶。", "今天天气很好。", "他每天坐地铁去上班。", "这本书很有意思。"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plain", action="store_true", help="the same network in keras/keras_hub")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-layers", type=int, default=2, help="encoder and decoder depth")
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--hidden-dim", type=int, default=128)
    p.add_argument("--intermediate-dim", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--attention-mult", type=float, default=1.0,
                   help="u-muP attention multiplier of the unit-scaled model")
    p.add_argument("--output-mult", type=float, default=8.0,
                   help="u-muP output (logit) multiplier of the unit-scaled model")
    p.add_argument("--english-vocabulary", type=int, default=2000)
    p.add_argument("--source-length", type=int, default=18)
    p.add_argument("--target-length", type=int, default=24)
    p.add_argument("--learning-rate", type=float, default=None,
                   help="default: 3e-2 (unit-scaled AdamW) or 1e-3 (plain AdamW)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="append the results as one JSON line here")
    p.add_argument("--save", default=None, help="save the trained model to this .keras path")
    return p.parse_args()


def unit_scaled_model(args, preprocessor):
    backbone = Seq2SeqBackbone(
        preprocessor.tokenizer.vocabulary_size(),
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        hidden_dim=args.hidden_dim,
        intermediate_dim=args.intermediate_dim,
        max_sequence_length=max(args.source_length, args.target_length),
        decoder_vocabulary_size=preprocessor.decoder_tokenizer.vocabulary_size(),
        dropout=args.dropout,
        attention_mult=args.attention_mult,
    )
    model = Seq2SeqLM(backbone, preprocessor, output_mult=args.output_mult)
    # The recipe docs/results.md measured: Keras' AdamW, one rate for every weight (before
    # u-muP's per-weight rates became compile()'s default; retuning them is issue #16's).
    model.compile(optimizer=keras.optimizers.AdamW(args.learning_rate or 3e-2, weight_decay=0.0))
    return model


def plain_model(args, preprocessor):
    """Pre-norm KerasHub encoder/decoder blocks, tied embeddings, the same sizes."""
    hub = keras_hub.layers
    length = max(args.source_length, args.target_length)

    def ids(name):
        return keras.Input((None,), dtype="int32", name=name)

    inputs = {k: ids(k) for k in ("encoder_token_ids", "encoder_padding_mask",
                                  "decoder_token_ids", "decoder_padding_mask")}
    source = hub.TokenAndPositionEmbedding(
        preprocessor.tokenizer.vocabulary_size(), length, args.hidden_dim)
    target = hub.TokenAndPositionEmbedding(
        preprocessor.decoder_tokenizer.vocabulary_size(), length, args.hidden_dim)
    block = dict(intermediate_dim=args.intermediate_dim, num_heads=args.num_heads,
                 dropout=args.dropout, activation="gelu", normalize_first=True)
    x = keras.layers.Dropout(args.dropout)(source(inputs["encoder_token_ids"]))
    for _ in range(args.num_layers):
        x = hub.TransformerEncoder(**block)(x, padding_mask=inputs["encoder_padding_mask"])
    encoded = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    y = keras.layers.Dropout(args.dropout)(target(inputs["decoder_token_ids"]))
    for _ in range(args.num_layers):
        y = hub.TransformerDecoder(**block)(
            y, encoded, decoder_padding_mask=inputs["decoder_padding_mask"],
            encoder_padding_mask=inputs["encoder_padding_mask"])
    y = keras.layers.LayerNormalization(epsilon=1e-5)(y)
    logits = target.token_embedding(y, reverse=True)
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.AdamW(args.learning_rate or 1e-3, weight_decay=0.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def arrays(preprocessor, zh, en):
    x, y, w = preprocessor({"encoder_text": list(zh), "decoder_text": list(en)})
    x = {k: keras.ops.convert_to_numpy(v).astype("int32") for k, v in x.items()}
    return x, keras.ops.convert_to_numpy(y), keras.ops.convert_to_numpy(w)


def token_cross_entropy(model, x, y, w, batch_size=256):
    """Mean negative log-likelihood over real target tokens (padding excluded)."""
    logits = model.predict(x, batch_size=batch_size, verbose=0).astype("float64")
    logits -= logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, y[..., None], -1)[..., 0]
    return float((nll * w).sum() / w.sum())


def greedy_plain(model, preprocessor, sources, length):
    """Greedy decoding that reruns the whole decoder for every new token."""
    x = preprocessor.generate_preprocess(list(sources), decoder_sequence_length=length)
    x = {k: keras.ops.convert_to_numpy(v).astype("int32") for k, v in x.items()}
    end = preprocessor.decoder_tokenizer.end_token_id
    ids, done = x["decoder_token_ids"].copy(), np.zeros(len(sources), bool)
    for i in range(1, length):
        logits = keras.ops.convert_to_numpy(
            model.predict_on_batch({**x, "decoder_token_ids": ids,
                                    "decoder_padding_mask": np.ones_like(ids)}))
        ids[:, i] = np.where(done, 0, logits[:, i - 1].argmax(-1))
        done |= ids[:, i] == end
        if done.all():
            break
    return preprocessor.detokenize(ids[:, 1:])


def main():
    args = parse_args()
    keras.utils.set_random_seed(args.seed)
    (zh_train, en_train), (zh_val, en_val), (zh_test, en_test) = load_zh_en_pairs(args.seed)
    preprocessor = Seq2SeqLMPreprocessor(
        CharacterTokenizer.from_corpus(zh_train),
        train_word_piece(list(en_train), args.english_vocabulary),
        args.source_length,
        args.target_length,
    )
    model = (plain_model if args.plain else unit_scaled_model)(args, preprocessor)
    name = "plain Keras/KerasHub" if args.plain else "unit-scaled"
    print(f"{name}: {model.count_params():,} parameters, {len(zh_train)} training pairs")

    val = arrays(preprocessor, zh_val, en_val)
    start = time.time()
    if args.plain:
        x, y, w = arrays(preprocessor, zh_train, en_train)
        model.fit(x, y, sample_weight=w, batch_size=args.batch_size, epochs=args.epochs,
                  validation_data=val, verbose=2)
    else:
        model.fit({"encoder_text": zh_train, "decoder_text": en_train},
                  batch_size=args.batch_size, epochs=args.epochs, verbose=2,
                  validation_data=({"encoder_text": zh_val, "decoder_text": en_val},))
    train_time = time.time() - start
    x_val, y_val, w_val = val
    if not args.plain:  # our model preprocesses raw text itself, in the same order
        x_val = {"encoder_text": zh_val, "decoder_text": en_val}
    val_nll = token_cross_entropy(model, x_val, y_val, w_val)

    start = time.time()
    if args.plain:
        hypotheses = greedy_plain(model, preprocessor, zh_test, args.target_length)
        samples = greedy_plain(model, preprocessor, SAMPLES, args.target_length)
    else:
        hypotheses = model.generate(list(zh_test))
        samples = model.generate(SAMPLES)
    translate_time = time.time() - start
    hypotheses = [tidy_detokenized(h) for h in hypotheses]
    bleu = sacrebleu.corpus_bleu(hypotheses, [list(en_test)], lowercase=True)
    chrf = sacrebleu.corpus_chrf(hypotheses, [[e.lower() for e in en_test]])
    for source, hypothesis, reference in list(zip(zh_test, hypotheses, en_test))[:6]:
        print(f"  {source} -> {hypothesis!r}  (reference: {reference!r})")
    for source, hypothesis in zip(SAMPLES, samples):
        print(f"  {source} -> {tidy_detokenized(hypothesis)!r}")
    result = {
        "model": name, "backend": keras.config.backend(), "params": model.count_params(),
        "epochs": args.epochs, "steps": args.epochs * -(-len(zh_train) // args.batch_size),
        "train_seconds": round(train_time, 1), "translate_seconds": round(translate_time, 1),
        "val_token_nll": round(val_nll, 4), "test_bleu": round(bleu.score, 2),
        "test_chrf": round(chrf.score, 2),
    }
    print(json.dumps(result))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")
    if args.save:
        model.save(args.save)


if __name__ == "__main__":
    main()
