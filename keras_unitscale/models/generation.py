"""Text generation shared by the generative tasks: samplers, one compiled decoding function
per sampler, input checks and the `generate()` driver.

A task subclasses `GenerativeTask` and implements `generate_step(inputs, sampler,
stop_token_ids)`: one batch of packed prompts in, `{"...token_ids", "...padding_mask"}` out,
written with `keras.ops` only, so that it compiles whole. `make_generate_function` compiles it
once per sampler, as KerasHub's `CausalLM` does, with `keras_unitscale.backend.
compile_stateful`: `tf.function(jit_compile=True)` on TensorFlow; on JAX a `jax.jit` function
to which the variables are passed as state (so the compiled program does not capture stale
weights) and which hands the sampler's new seed state back.
"""


import sys

import keras
import numpy as np
from keras import ops

from keras_unitscale import _validation, samplers
from keras_unitscale.backend import compile_stateful
from keras_unitscale.models.decoding import (  # noqa: F401 (re-exported: their old home)
    decode_with_cache,
    generated_mask,
    prefill,
    prefill_lengths,
)
from keras_unitscale.models.task import Task
from keras_unitscale.models.task_inputs import check_model_inputs, input_vocabulary_size
from keras_unitscale.samplers import (  # noqa: F401 (re-exported: their old home)
    SAMPLER_NAMES,
    check_sampler,
    get_sampler,
)

GENERATION_LENGTH_BUCKET = 32
"""`generate()` rounds the decoded length up to a multiple of this, and the batch up to a power
of two, so that one compiled decoding function serves many `max_length`s and batch sizes."""


def __getattr__(name):
    if name == "SAMPLERS":  # re-exported from `keras_unitscale.samplers`, made on first use
        return samplers.SAMPLERS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_max_length(max_length, prompt_length, limit=None):
    """`max_length` must be an int longer than the longest prompt and within `limit`."""
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)):
        raise ValueError(f"`max_length` must be a positive int; received {max_length!r}.")
    if max_length <= prompt_length:
        raise ValueError(
            f"`max_length` ({max_length}) must be longer than the longest prompt, which is "
            f"{prompt_length} tokens with its start token: nothing could be generated."
        )
    if limit is not None and max_length > limit:
        raise ValueError(
            f"`max_length` ({max_length}) exceeds the {limit} positions the model was built "
            "for (its position embedding)."
        )
    return int(max_length)


def check_stop_token_ids(backbone, stop_token_ids):
    """A tuple of ints within the vocabulary the model generates from."""
    ids = _validation.int_tuple(stop_token_ids, "stop_token_ids")
    size = input_vocabulary_size(backbone, "decoder_token_ids")
    if size is not None:
        _validation.ids_in_range(ids, size, "stop_token_ids")
    return ids


def check_texts(inputs, name="prompts"):
    """Returns `(texts, is_scalar)` for a string or a non-empty batch of strings."""
    if "tensorflow" in sys.modules and isinstance(inputs, sys.modules["tensorflow"].Tensor):
        inputs = inputs.numpy()
    if isinstance(inputs, np.ndarray):
        inputs = inputs.item() if inputs.ndim == 0 else inputs.tolist()
    if isinstance(inputs, bytes):
        inputs = inputs.decode("utf-8")
    if isinstance(inputs, str):
        return [inputs], True
    if not isinstance(inputs, (list, tuple)):
        raise ValueError(
            f"`{name}` must be a string or a list of strings; received "
            f"{type(inputs).__name__}: {inputs!r:.60}."
        )
    if not inputs:
        raise ValueError(f"`{name}` is empty: give at least one string.")
    texts = []
    for i, text in enumerate(inputs):
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise ValueError(
                f"`{name}` must hold strings; element {i} is {type(text).__name__}: "
                f"{text!r:.60}."
            )
        texts.append(text)
    return texts, False


class GenerativeTask(Task):
    """Base class of `CausalLM` and `Seq2SeqLM`: training defaults and `generate()`.

    `compile()` adds token accuracy as a weighted metric (padding has weight 0) and a default
    `sampler` for `generate()` (greedy if never compiled). Subclasses implement
    `generate_step`, `pack_prompts` and the prompt hooks `_generate_inputs` and
    `_generate_outputs`, and declare `prompt_input`, `end_token_tokenizer` and
    `generated_keys` (read by the export).

    Example:
    >>> import keras_unitscale as ku
    >>> issubclass(ku.models.CausalLM, ku.models.GenerativeTask)
    True
    """

    prompt_input = ("prompt", "tokenizer")
    """The raw-text input of its `generate` signature, and the preprocessor's attribute
    holding its tokenizer."""
    end_token_tokenizer = "tokenizer"
    """The preprocessor's attribute holding the tokenizer whose end token ends generation."""
    generated_keys = ("token_ids", "padding_mask")
    """The packed inputs whose second axis is the sequence being generated."""

    def pack_prompts(self, prompts, length):
        """Raw prompts (as the preprocessor takes them) packed to `length` for
        `generate_step`; also run inside an export's `generate` signature."""
        raise NotImplementedError

    def compile(self, optimizer=None, loss=None, *, weighted_metrics="auto", sampler="greedy",
                **kwargs):
        """`UnitScaledModel.compile`, plus `sampler` (the default of `generate()`) and token
        accuracy as the default `weighted_metrics`."""
        if weighted_metrics == "auto":
            weighted_metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, weighted_metrics=weighted_metrics,
                        **kwargs)
        self.sampler = check_sampler(sampler)
        self._generate_functions = []  # recompiled: weights or policies may have changed

    @property
    def sampler(self):
        """The default sampler of `generate()`, a `keras_hub.samplers.Sampler` (made on first
        use from the name given to `compile()`), or None before `compile()`."""
        sampler = getattr(self, "_sampler", None)
        if isinstance(sampler, str):
            sampler = self._sampler = get_sampler(sampler)
        return sampler

    @sampler.setter
    def sampler(self, value):
        self._sampler = check_sampler(value) if value is not None else None

    def check_targets(self, y):
        """Labels come from the text with a preprocessor; without one, integer token ids."""
        name = type(self).__name__
        if self.preprocessor is not None:
            raise ValueError(
                f"{name} makes its labels from the text (the next token at each position): "
                "pass only `x`, not `y`. To train on your own ids and labels, set "
                "`preprocessor=None`."
            )
        dtype = getattr(y, "dtype", None)
        try:
            dtype = keras.backend.standardize_dtype(np.asarray(y).dtype if dtype is None else dtype)
        except ValueError:
            dtype = str(dtype)
        if "int" not in dtype:
            raise ValueError(
                f"{name} labels `y` must be integer token ids [batch, length]; received dtype "
                f"{dtype}."
            )

    # The compiled decoding function --------------------------------------------------------
    def generate_step(self, inputs, sampler, stop_token_ids=None):
        """Decodes one batch of packed prompts; must be compilable (`keras.ops` only)."""
        raise NotImplementedError

    def _resolve_sampler(self, sampler):
        if sampler is None:
            sampler = getattr(self, "sampler", None) or "greedy"
        if isinstance(sampler, str):
            # One instance per name, so that a random sampler's seed state carries on.
            if not hasattr(self, "_named_samplers"):
                self._named_samplers = {}
            if sampler not in self._named_samplers:
                self._named_samplers[sampler] = get_sampler(sampler)
            return self._named_samplers[sampler]
        return get_sampler(sampler)

    def make_generate_function(self, sampler):
        """The compiled `generate_step` for `sampler` (made once, then reused)."""
        if getattr(self, "_generate_functions", None) is None:
            self._generate_functions = []
        for known, function in self._generate_functions:
            if known is sampler:
                return function
        function = self._compile_generate_step(sampler)
        self._generate_functions.append((sampler, function))
        return function

    def _compile_generate_step(self, sampler):
        def step(inputs, stop_token_ids=None):
            return self.generate_step(inputs, sampler, stop_token_ids)

        if self.run_eagerly:
            return step
        # One XLA program per input shape; the sampler's seed is the only state it updates.
        return compile_stateful(step, updated=sampler.variables,
                                read=self.trainable_variables + self.non_trainable_variables)

    # Prompt hooks -------------------------------------------------------------------------
    def _generate_inputs(self, prompts, max_length):
        """Raw prompts (checked, batched) -> packed inputs for `generate_step`."""
        raise NotImplementedError

    def _generate_outputs(self, outputs, inputs, strip_prompt):
        """Numpy outputs of `generate_step` -> list of strings."""
        raise NotImplementedError

    def _check_prompts(self, prompts):
        """Returns `(batch, is_scalar)`; raises `ValueError` on bad prompts."""
        return check_texts(prompts)

    # The driver ---------------------------------------------------------------------------
    def generate(self, prompts, max_length=None, sampler=None, stop_token_ids="auto",
                 strip_prompt=False):
        """Generates text from prompts (strings in, strings out).

        Args:
            prompts: a string or a list of strings (see the task for dict prompts); or the
                packed token ids and padding masks the backbone takes (a dict with its input
                names), which skips the preprocessor (required when there is none).
            max_length: total length of each sequence, prompt and start token included;
                default the preprocessor's sequence length.
            sampler: `"greedy"`, `"top_k"`, `"top_p"`, `"random"` or a
                `keras_hub.samplers.Sampler`; default the one given to `compile()`.
            stop_token_ids: `"auto"` (the tokenizer's end token), a tuple of ids, or `None`
                to always generate `max_length` tokens.
            strip_prompt: return only the generated text.

        Returns:
            A string for one prompt string, else a list of strings; for packed prompts, the
            dict of generated ids and padding mask as numpy arrays.

        Text prompts are decoded in bucketed shapes (the batch rounded up to a power of two,
        the length to a multiple of `GENERATION_LENGTH_BUCKET`) and cut back, so a new batch
        size or `max_length` rarely compiles a new function; packed prompts are decoded in
        the shape given.
        """
        input_names = set(self.backbone.input) if isinstance(self.backbone.input, dict) else ()
        packed = isinstance(prompts, dict) and set(prompts) == input_names
        if self.preprocessor is None and not packed:
            raise ValueError(
                f"{type(self).__name__} has no preprocessor: `prompts` must be a dict of packed "
                f"token ids and padding masks with keys {sorted(input_names)}; received "
                f"{type(prompts).__name__}: {prompts!r:.60}."
            )
        if isinstance(stop_token_ids, str) and stop_token_ids == "auto":
            if self.preprocessor is None:
                raise ValueError(
                    'stop_token_ids="auto" needs a preprocessor (its tokenizer\'s end token); '
                    "pass a tuple of ids or None."
                )
            stop_token_ids = (self.end_token_id,)
        elif stop_token_ids is not None:
            stop_token_ids = check_stop_token_ids(self.backbone, stop_token_ids)
        if packed:  # checked here, on concrete values: inside the compiled function, not
            check_model_inputs(self.backbone, prompts, "prompts")
        function = self.make_generate_function(self._resolve_sampler(sampler))
        if packed:
            # Already packed: token ids and padding masks, as the backbone takes them.
            outputs = function(prompts, stop_token_ids)
            return keras.tree.map_structure(ops.convert_to_numpy, outputs)
        batch, is_scalar = self._check_prompts(prompts)
        inputs = self._generate_inputs(batch, max_length)
        inputs = keras.tree.map_structure(ops.convert_to_numpy, inputs)
        outputs = function(self._bucketed(inputs), stop_token_ids)
        outputs = keras.tree.map_structure(ops.convert_to_numpy, outputs)
        rows = len(next(iter(inputs.values())))
        length = inputs[self.generated_keys[0]].shape[1]
        outputs = {name: value[:rows, :length] if name in self.generated_keys else value[:rows]
                   for name, value in outputs.items()}
        texts = self._generate_outputs(outputs, inputs, strip_prompt)
        return texts[0] if is_scalar else texts

    # Shape buckets --------------------------------------------------------------------------
    def _bucketed(self, inputs):
        """`inputs` (numpy, packed) grown to a bucketed shape, so that the compiled decoding
        function is reused across batch sizes and `max_length`s instead of recompiled (seconds
        each): the batch to the next power of two, by repeating the first prompt; the decoded
        sequence to the next multiple of `GENERATION_LENGTH_BUCKET` (within the backbone's
        `max_sequence_length`), by padding positions the prompt does not cover.

        Exact for the rows and positions kept: decoding is causal, masking makes padding
        irrelevant, and each prompt row is decoded independently. The driver cuts the outputs
        back to the real rows and `max_length`. The cost is decoding at most
        `GENERATION_LENGTH_BUCKET - 1` extra positions when no stop token ends the batch first.
        """
        rows = len(next(iter(inputs.values())))
        extra_rows = (1 << max(rows - 1, 0).bit_length()) - rows
        length = inputs[self.generated_keys[0]].shape[1]
        bucket = -(-length // GENERATION_LENGTH_BUCKET) * GENERATION_LENGTH_BUCKET
        limit = getattr(self.backbone, "max_sequence_length", None)
        if limit is not None:
            bucket = max(length, min(bucket, int(limit)))
        grown = {}
        for name, value in inputs.items():
            value = np.asarray(value)
            if extra_rows:
                value = np.concatenate([value, np.repeat(value[:1], extra_rows, axis=0)])
            if name in self.generated_keys and bucket > length:
                widths = [(0, 0), (0, bucket - length)] + [(0, 0)] * (value.ndim - 2)
                value = np.pad(value, widths)
            grown[name] = value
        return grown

    @property
    def end_token_id(self):
        """The id that ends a generated sequence: the end token of the preprocessor's
        `end_token_tokenizer`."""
        return getattr(self.preprocessor, self.end_token_tokenizer).end_token_id


def strip_prompt_mask(mask, prompt_mask):
    """`mask` with the prompt's positions turned off (numpy)."""
    return np.logical_and(np.asarray(mask, bool), np.logical_not(np.asarray(prompt_mask, bool)))
