"""keras_unitscale.tokenizers: text to token ids and back.

- `JiebaTokenizer`: Chinese word segmentation with jieba, vocabulary built from a corpus.
- `CharacterTokenizer`: one id per character, vocabulary built from a corpus.
- `WordPieceTokenizer` / `train_word_piece`, `SentencePieceTokenizer` / `train_sentence_piece`:
  KerasHub's subword tokenizers with the same special-token ids, and trainers;
  `tidy_detokenized` closes the spaces WordPiece leaves around punctuation.
- `VocabularyTokenizer`: the base class of the first two; `build_vocabulary` counts tokens.

Every tokenizer exposes `pad_token_id`, `unknown_token_id`, `start_token_id`, `end_token_id`
and `cls_token_id`, runs eagerly and inside `tf.data` on every backend, and saves its
vocabulary as an asset (`save_assets` / `load_assets`).
"""

from keras_unitscale.tokenizers.character_tokenizer import CharacterTokenizer
from keras_unitscale.tokenizers.jieba_tokenizer import JiebaTokenizer
from keras_unitscale.tokenizers.sentence_piece_tokenizer import (
    SentencePieceTokenizer,
    train_sentence_piece,
)
from keras_unitscale.tokenizers.vocabulary import SPECIAL_TOKENS, build_vocabulary
from keras_unitscale.tokenizers.vocabulary_tokenizer import VocabularyTokenizer
from keras_unitscale.tokenizers.word_piece_tokenizer import (
    WordPieceTokenizer,
    tidy_detokenized,
    train_word_piece,
)

__all__ = [
    "CharacterTokenizer",
    "JiebaTokenizer",
    "SentencePieceTokenizer",
    "SPECIAL_TOKENS",
    "VocabularyTokenizer",
    "WordPieceTokenizer",
    "build_vocabulary",
    "train_sentence_piece",
    "train_word_piece",
    "tidy_detokenized",
]
