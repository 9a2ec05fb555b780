"""A tiny Seq2SeqLM on character tokenizers (no jieba dictionary to load, so it builds in
about a second): every kind of preset file, two tokenizers and the head's own weights."""

EN = ["this book is good", "bad quality", "very good", "i like cats"]
ZH = ["这本书很好", "质量太差了", "很好很喜欢", "我喜欢猫"]


def char_seq2seq_lm(seed):
    import keras

    from keras_unitscale.models.seq2seq_backbone import Seq2SeqBackbone
    from keras_unitscale.models.seq2seq_lm import Seq2SeqLM
    from keras_unitscale.preprocessors import Seq2SeqLMPreprocessor
    from keras_unitscale.tokenizers import CharacterTokenizer

    keras.utils.set_random_seed(seed)
    preprocessor = Seq2SeqLMPreprocessor(
        CharacterTokenizer.from_corpus(ZH), CharacterTokenizer.from_corpus(EN), 8, 8)
    backbone = Seq2SeqBackbone(
        preprocessor.tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=8,
        decoder_vocabulary_size=preprocessor.decoder_tokenizer.vocabulary_size(),
    )
    return Seq2SeqLM(backbone, preprocessor, tie_weights=False)
