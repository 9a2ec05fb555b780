"""`Seq2SeqLM`: an encoder-decoder language model for translation, fitted on raw text pairs."""

import keras
from keras import ops

from keras_unitscale.layers.heads import LMHead
from keras_unitscale.models.generation import (
    GenerativeTask,
    check_max_length,
    check_texts,
    decode_with_cache,
    generated_mask,
    strip_prompt_mask,
)
from keras_unitscale.models.backbones import TransformerEncoderBackbone
from keras_unitscale.models.seq2seq_backbone import Seq2SeqBackbone
from keras_unitscale.models.task import LazyClass
from keras_unitscale.models.task_inputs import check_preprocessor


@keras.saving.register_keras_serializable(package="keras_unitscale")
class Seq2SeqLM(GenerativeTask):
    """Sequence-to-sequence language model: a `Seq2SeqBackbone` and a unit-scaled readout.

    `fit`, `evaluate` and `predict` take `{"encoder_text": [...], "decoder_text": [...]}`
    (raw strings) when a `Seq2SeqLMPreprocessor` is attached; the loss is next-token
    cross-entropy on the target (padding has weight 0). `generate` translates: source
    strings (or `{"encoder_text", "decoder_text"}` with a target prefix to continue) in,
    target strings out. The encoder runs once; the decoder runs one token a step with a
    self-attention cache and a cross-attention cache filled on the first step, inside one
    compiled function (see `keras_unitscale.models.generation`).

    Args:
        backbone: a `keras_unitscale.models.Seq2SeqBackbone`.
        preprocessor: a `keras_unitscale.preprocessors.Seq2SeqLMPreprocessor`, or `None` to
            feed token ids.
        tie_weights: the readout uses the transpose of the decoder's token embedding table
            (u-muP readout scale either way).
        output_mult: u-muP's output multiplier on the logits (see `LMHead`).

    Example:
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.preprocessors import Seq2SeqLMPreprocessor
    >>> from keras_unitscale.tokenizers import CharacterTokenizer
    >>> zh, en = ["我爱猫", "你好"], ["i love cats", "hello"]
    >>> preprocessor = Seq2SeqLMPreprocessor(
    ...     CharacterTokenizer.from_corpus(zh), CharacterTokenizer.from_corpus(en), 8, 16)
    >>> backbone = ku.models.Seq2SeqBackbone(
    ...     preprocessor.tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=32,
    ...     intermediate_dim=64, max_sequence_length=16,
    ...     decoder_vocabulary_size=preprocessor.decoder_tokenizer.vocabulary_size())
    >>> model = ku.models.Seq2SeqLM(backbone, preprocessor)
    >>> model.compile()
    >>> _ = model.fit({"encoder_text": zh, "decoder_text": en}, epochs=2, verbose=0)
    >>> isinstance(model.generate("我爱猫", max_length=8), str)
    True
    """

    backbone_cls = (Seq2SeqBackbone,)
    preprocessor_cls = LazyClass("keras_unitscale.preprocessors", "Seq2SeqLMPreprocessor")
    text_inputs = {"encoder_text": "tokenizer", "decoder_text": "decoder_tokenizer"}
    serving_outputs = ("logits",)
    data_columns = {"encoder_text": "source", "decoder_text": "target"}
    command = "translate"
    # A transformer size translates as an encoder-decoder of those sizes.
    architecture_backbones = {TransformerEncoderBackbone: (Seq2SeqBackbone, {})}
    prompt_input = ("encoder_text", "tokenizer")
    end_token_tokenizer = "decoder_tokenizer"
    generated_keys = ("decoder_token_ids", "decoder_padding_mask")

    def __init__(self, backbone, preprocessor=None, tie_weights=True, output_mult=1.0, **kwargs):
        check_preprocessor(backbone, preprocessor)
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.tie_weights = bool(tie_weights)
        self.lm_head = LMHead(
            backbone.decoder_vocabulary_size,
            embedding=backbone.token_embedding if self.tie_weights else None,
            output_mult=output_mult,
            dtype=backbone.dtype_policy,
            name="lm_head",
        )
        # === Functional model ===
        inputs = backbone.input
        outputs = self.lm_head(backbone(inputs))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    # Generation -----------------------------------------------------------------------------
    def call_decoder_with_cache(self, encoder_outputs, encoder_padding_mask, token_ids,
                                self_attention_cache, cache_update_index, cross_attention_cache,
                                cross_attention_cache_update_index=None):
        """Logits and updated caches for `token_ids` at `cache_update_index`; see
        `Seq2SeqBackbone.call_decoder_with_cache`."""
        hidden, self_cache, cross_cache = self.backbone.call_decoder_with_cache(
            encoder_outputs, encoder_padding_mask, token_ids, self_attention_cache,
            cache_update_index, cross_attention_cache, cross_attention_cache_update_index,
        )
        return self.lm_head(hidden), hidden, self_cache, cross_cache

    def call_with_cache(self, token_ids, cache, cache_update_index, padding_mask=None):
        """Logits of target tokens `token_ids [batch, T]` placed at `cache_update_index`, with
        the decoder's cache (`Seq2SeqBackbone.with_source`): `(logits, hidden, cache)`."""
        hidden, cache = self.backbone.call_with_cache(
            token_ids, cache, cache_update_index, padding_mask=padding_mask
        )
        return self.lm_head(hidden), hidden, cache

    def generate_step(self, inputs, sampler, stop_token_ids=None):
        """Translates one packed batch: the four-key dict of `Seq2SeqLMPreprocessor`."""
        token_ids = inputs["decoder_token_ids"]
        padding_mask = ops.cast(inputs["decoder_padding_mask"], "bool")
        # The encoder runs once; the prompt pass projects its states for cross-attention.
        cache = self.backbone.with_source(
            self.backbone.empty_cache(ops.shape(token_ids)[0], ops.shape(token_ids)[1]),
            inputs["encoder_token_ids"], inputs["encoder_padding_mask"],
        )
        token_ids = decode_with_cache(
            self.call_with_cache, cache, token_ids, padding_mask, sampler, stop_token_ids, self,
            parallel_prefill=self.backbone.parallel_prefill,
        )
        return {
            "decoder_token_ids": token_ids,
            "decoder_padding_mask": generated_mask(token_ids, padding_mask, stop_token_ids),
        }

    def _check_prompts(self, prompts):
        if isinstance(prompts, dict):
            unknown = set(prompts) - {"encoder_text", "decoder_text"}
            if "encoder_text" not in prompts or unknown:
                raise ValueError(
                    "`prompts` as a dict must have 'encoder_text' and optionally "
                    f"'decoder_text'; received keys {sorted(prompts)}."
                )
            source, is_scalar = check_texts(prompts["encoder_text"], "prompts['encoder_text']")
            batch = {"encoder_text": source}
            if prompts.get("decoder_text") is not None:
                target, _ = check_texts(prompts["decoder_text"], "prompts['decoder_text']")
                if len(target) != len(source):
                    raise ValueError(
                        "`prompts['encoder_text']` and `prompts['decoder_text']` must have the "
                        f"same length; received {len(source)} and {len(target)}."
                    )
                batch["decoder_text"] = target
            return batch, is_scalar
        source, is_scalar = check_texts(prompts)
        return {"encoder_text": source}, is_scalar

    def _generate_inputs(self, prompts, max_length):
        preprocessor = self.preprocessor
        if max_length is None:
            max_length = preprocessor.decoder_sequence_length
        # [START] and one position to generate are all a decoder prompt needs: a longer one
        # keeps its end (the preprocessor cuts it, as CausalLM does), and a source longer
        # than the encoder's length is cut as in training.
        max_length = check_max_length(max_length, 1, self.backbone.max_sequence_length)
        return self.pack_prompts(prompts, max_length)

    def pack_prompts(self, prompts, length):
        """Prompts (`{"encoder_text": ...}`, strings or a string tensor, and optionally
        `"decoder_text"`) packed for `generate_step`, the decoder's side to `length` tokens."""
        return self.preprocessor.generate_preprocess(prompts, decoder_sequence_length=length)

    def _generate_outputs(self, outputs, inputs, strip_prompt):
        if strip_prompt:
            outputs = dict(outputs)
            outputs["decoder_padding_mask"] = strip_prompt_mask(
                outputs["decoder_padding_mask"], inputs["decoder_padding_mask"]
            )
        texts = self.preprocessor.generate_postprocess(outputs)
        return [texts] if isinstance(texts, str) else list(texts)

    def get_config(self):
        config = super().get_config()
        config.update(tie_weights=self.tie_weights, output_mult=self.lm_head.output_mult)
        return config

