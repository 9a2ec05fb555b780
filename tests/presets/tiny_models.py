"""Tiny task models of each kind (random weights), for the preset and command-line tests."""

import keras
import numpy as np

ZH = ["这本书很好", "质量太差了", "很好很喜欢", "太差了不推荐", "我喜欢猫", "你好"]
EN = ["this book is good", "bad quality", "very good", "too bad", "i like cats", "hello"]
LABELS = np.array([1, 0, 1, 0, 1, 1], dtype="int32")


def classifier_preprocessor():
    from keras_unitscale.preprocessors import TextClassifierPreprocessor
    from keras_unitscale.tokenizers import JiebaTokenizer

    return TextClassifierPreprocessor(JiebaTokenizer.from_corpus(ZH), sequence_length=8)


def causal_lm_preprocessor():
    from keras_unitscale.preprocessors import CausalLMPreprocessor
    from keras_unitscale.tokenizers import CharacterTokenizer

    return CausalLMPreprocessor(CharacterTokenizer.from_corpus(ZH), sequence_length=8)


def seq2seq_lm_preprocessor():
    from keras_unitscale.preprocessors import Seq2SeqLMPreprocessor
    from keras_unitscale.tokenizers import CharacterTokenizer, JiebaTokenizer

    return Seq2SeqLMPreprocessor(
        JiebaTokenizer.from_corpus(ZH), CharacterTokenizer.from_corpus(EN), 8, 8
    )


def tiny_classifier():
    from keras_unitscale.models.backbones import LSTMBackbone
    from keras_unitscale.models.text_classifier import TextClassifier

    preprocessor = classifier_preprocessor()
    backbone = LSTMBackbone(preprocessor.tokenizer.vocabulary_size(), hidden_dim=4)
    return TextClassifier(backbone, num_classes=2, preprocessor=preprocessor)


def tiny_causal_lm():
    from keras_unitscale.models.backbones import TransformerDecoderBackbone
    from keras_unitscale.models.causal_lm import CausalLM

    preprocessor = causal_lm_preprocessor()
    backbone = TransformerDecoderBackbone(
        preprocessor.tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=8,
    )
    return CausalLM(backbone, preprocessor)


def tiny_seq2seq_lm():
    from keras_unitscale.models.seq2seq_backbone import Seq2SeqBackbone
    from keras_unitscale.models.seq2seq_lm import Seq2SeqLM

    preprocessor = seq2seq_lm_preprocessor()
    backbone = Seq2SeqBackbone(
        preprocessor.tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=8,
        decoder_vocabulary_size=preprocessor.decoder_tokenizer.vocabulary_size(),
    )
    # Untied: the head has its own kernel, so `task.weights.h5` is exercised too.
    return Seq2SeqLM(backbone, preprocessor, tie_weights=False)


BUILDERS = {"classifier": tiny_classifier, "causal_lm": tiny_causal_lm,
            "seq2seq_lm": tiny_seq2seq_lm}
INPUTS = {"classifier": ZH, "causal_lm": ZH,
          "seq2seq_lm": {"encoder_text": ZH, "decoder_text": EN}}


def outputs(task, kind):
    """The task's outputs on the fixed inputs of `kind`, as numpy (no compiled function)."""
    features = task.preprocessor(INPUTS[kind])
    features = features[0] if isinstance(features, tuple) else features
    return keras.ops.convert_to_numpy(task(features))
