"""keras_unitscale.preprocessors: raw strings to model inputs, labels and weights.

Each is a `keras_hub.models.Preprocessor` (a Keras layer) holding a tokenizer; call it eagerly,
map it over a `tf.data.Dataset`, or hand it to a task. Output keys:

- `TextClassifierPreprocessor`: `{"token_ids", "padding_mask"}`, labels passed through.
- `Seq2SeqLMPreprocessor`: `{"encoder_token_ids", "encoder_padding_mask", "decoder_token_ids",
  "decoder_padding_mask"}`, y = decoder ids shifted by one, sample_weight = padding weights.
- `CausalLMPreprocessor`: `{"token_ids", "padding_mask"}`, y = ids shifted by one,
  sample_weight = padding weights; `pack_dataset` packs texts into full windows instead.
"""

from keras_unitscale.preprocessors.causal_lm_preprocessor import CausalLMPreprocessor
from keras_unitscale.preprocessors.seq2seq_lm_preprocessor import Seq2SeqLMPreprocessor
from keras_unitscale.preprocessors.text_classifier_preprocessor import TextClassifierPreprocessor

__all__ = ["CausalLMPreprocessor", "Seq2SeqLMPreprocessor", "TextClassifierPreprocessor"]
