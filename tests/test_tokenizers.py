"""Char, word and SentencePiece tokenizers: exact round trips, unseen input, persistence, errors."""
import json
import random
from pathlib import Path

import pytest

from textgen_core.errors import ConfigError, ModelFolderError
from textgen_core.tokenizers import (
    TOKENIZER_KINDS,
    CharTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    WordTokenizer,
    load_tokenizer,
    make_tokenizer,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLASSES = [CharTokenizer, WordTokenizer, SentencePieceTokenizer]

PARAGRAPH = (
    "Alice was beginning to get very tired of sitting by her sister on the bank, and of having\n"
    "nothing to do: once or twice she had peeped into the book her sister was reading, but it had\n"
    "no pictures or conversations in it, “and what is the use of a book,” thought Alice “without\n"
    "pictures or conversations?”\n\n"
    "  So she was considering in her own mind (as well as she could, for the hot day made her\n"
    "feel very sleepy and stupid), whether the pleasure of making a daisy-chain would be worth\n"
    "the trouble of getting up and picking the daisies, when suddenly a White Rabbit with pink\n"
    "eyes ran close by her.\n"
)
TRICKY = {
    "empty": "",
    "one_char": "x",
    "emoji": "🙂👍🏽",
    "cjk": "你好，世界",
    "arabic": "مرحبا بالعالم",
    "combining": "e\u0301",
    "tabs_newlines": "a\tb\n\nc  d\n",
    "space_mark": "a\u2581b \u2581",  # U+2581 is SentencePiece's own space symbol
    "control": "nul\x00 bell\x07 cr\r",
    "paragraph": PARAGRAPH * 20,
}
PROBE = "Unseen: Ωμέγα ✨ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u2581 zebra-quux\n\t  done"


@pytest.fixture(scope="module")
def fitted() -> dict:
    """One tokenizer of each kind fitted on PARAGRAPH (fitting is the slow part)."""
    return {cls.kind: cls().fit(PARAGRAPH) for cls in CLASSES}


@pytest.mark.parametrize("text", TRICKY.values(), ids=TRICKY.keys())
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.kind)
def test_round_trip_and_reload(cls, text, tmp_path):
    tokenizer = cls().fit(text)
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert all(0 <= i < tokenizer.vocab_size for i in ids)
    tokenizer.save(tmp_path)
    reloaded = load_tokenizer(tmp_path)
    assert type(reloaded) is cls
    assert reloaded.vocab_size == tokenizer.vocab_size
    assert reloaded.encode(text) == ids
    assert reloaded.encode(PROBE) == tokenizer.encode(PROBE)
    assert reloaded.to_dict() == tokenizer.to_dict()


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_concatenation_rule(kind, fitted):
    tokenizer = fitted[kind]
    ids = tokenizer.encode(PARAGRAPH)
    whole = tokenizer.decode(ids)
    assert "".join(tokenizer.decode([i]) for i in ids) == whole
    assert "".join(tokenizer.token_strings(ids)) == whole  # no byte pieces in in-vocabulary text
    rng = random.Random(0)
    for cut in rng.sample(range(len(ids)), 50):
        assert tokenizer.decode(ids[:cut]) + tokenizer.decode(ids[cut:]) == whole


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_unseen_input_never_crashes(kind, fitted):
    tokenizer = fitted[kind]
    ids = tokenizer.encode(PROBE)
    assert all(0 <= i < tokenizer.vocab_size for i in ids)
    assert isinstance(tokenizer.decode(ids), str)


def test_char_unseen_maps_to_unk():
    tokenizer = CharTokenizer().fit("abca")
    assert tokenizer.unk_id == 0 and tokenizer.vocab_size == 4
    assert tokenizer.chars == ["a", "b", "c"]  # sorted, after <unk>
    assert tokenizer.encode("abz") == [1, 2, 0]
    assert tokenizer.decode([1, 2, 0]) == "ab\ufffd"


def test_char_cap_keeps_most_frequent():
    tokenizer = CharTokenizer(vocab_size=3).fit("aaabbc")
    assert tokenizer.chars == ["a", "b"]
    assert tokenizer.encode("c") == [tokenizer.unk_id]
    assert "kept the 2 most frequent of 3 distinct characters" in tokenizer.notes[0]


def test_word_splitting_and_unknown_words_keep_their_space():
    tokenizer = WordTokenizer().fit("Hello, world! It's a world.\nHello  there.")
    tokens = tokenizer.token_strings(tokenizer.encode("Hello, world!\n"))
    assert tokens == ["Hello", ",", " world", "!", "\n"]
    ids = tokenizer.encode("Hello zebra world, quux")
    assert tokenizer.decode(ids) == "Hello <unk> world, <unk>"
    assert tokenizer.encode("quux") == [tokenizer.unk_id]
    assert tokenizer.decode(tokenizer.encode("Hello  there. It's")) == "Hello  there. It's"


def test_word_vocabulary_cap_on_200k_distinct_words():
    rare = " ".join(f"w{i}" for i in range(200_000))
    text = ("the cat sat on the mat .\n" * 500) + rare
    tokenizer = WordTokenizer(vocab_size=1000).fit(text)
    assert tokenizer.vocab_size == 1000
    # 8 frequent tokens x 500 lines + 990 of the rare ones, out of 4000 + 200000 tokens.
    assert tokenizer.notes == [
        "kept the 998 most frequent of 200008 distinct words (2.4% of the text's tokens); "
        "the rest map to <unk>"
    ]
    assert tokenizer.decode(tokenizer.encode("the cat sat on the mat")) == "the cat sat on the mat"
    assert max(tokenizer.encode(rare[:20_000])) < 1000
    # Same text, same ids: ties are broken alphabetically, not by hash or arrival order.
    assert WordTokenizer(vocab_size=1000).fit(text).tokens == tokenizer.tokens


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_exact_for_unseen_text(model_type, tmp_path):
    tokenizer = SentencePieceTokenizer(vocab_size=400, model_type=model_type).fit(PARAGRAPH)
    for text in [PROBE, "🙂👍🏽 你好，世界", "\n\n\n", "   leading and trailing   ", "\u2581\u2581"]:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.encode("\n\n") == [tokenizer.encode("\n")[0]] * 2  # one reserved id per newline
    tokenizer.save(tmp_path)
    assert (tmp_path / "tokenizer.model").is_file()
    assert load_tokenizer(tmp_path).encode(PROBE) == tokenizer.encode(PROBE)


def test_sentencepiece_shows_bytes_of_multibyte_characters():
    tokenizer = SentencePieceTokenizer(vocab_size=300).fit("plain ascii words only " * 20)
    strings = tokenizer.token_strings(tokenizer.encode(" 你"))
    assert strings == [" ", "<0xE4>", "<0xBD>", "<0xA0>"]


def test_sentencepiece_leading_space_pieces_concatenate():
    tokenizer = SentencePieceTokenizer(vocab_size=400).fit(PARAGRAPH)
    ids = tokenizer.encode(" the sister and the book")
    assert tokenizer.decode(ids[:1]).startswith(" ")  # "▁" becomes a space even at the start
    assert "".join(tokenizer.decode([i]) for i in ids) == " the sister and the book"


def test_sentencepiece_vocab_reduced_or_raised_with_a_note():
    small = SentencePieceTokenizer(vocab_size=5000).fit(PARAGRAPH)
    assert small.vocab_size < 5000
    assert any("reduced from 5000" in note for note in small.notes)
    tiny = SentencePieceTokenizer(vocab_size=10).fit(PARAGRAPH)
    assert tiny.vocab_size > 256  # byte fallback needs all 256 bytes
    assert any("raised from 10" in note for note in tiny.notes)
    assert tiny.decode(tiny.encode(PROBE)) == PROBE


@pytest.mark.parametrize("text", ["", "\n", "ab"])
def test_sentencepiece_tiny_corpora_still_fit(text):
    tokenizer = SentencePieceTokenizer().fit(text)
    assert tokenizer.notes
    assert tokenizer.decode(tokenizer.encode(PROBE)) == PROBE


def test_make_tokenizer():
    assert TOKENIZER_KINDS == ("char", "word", "sentencepiece")
    assert isinstance(make_tokenizer("char"), CharTokenizer)
    assert make_tokenizer("word", 500).max_vocab_size == 500
    sp = make_tokenizer("sentencepiece", 300, model_type="unigram")
    assert (sp.requested_vocab_size, sp.model_type) == (300, "unigram")
    assert all(isinstance(make_tokenizer(kind), Tokenizer) for kind in TOKENIZER_KINDS)


@pytest.mark.parametrize("kind, vocab_size, options, message", [
    ("bpe", None, {}, "Unknown tokenizer 'bpe'; choose one of: char, word, sentencepiece"),
    ("word", 0, {}, "must be a positive whole number"),
    ("char", -5, {}, "must be a positive whole number"),
    ("word", 2, {}, "at least 3"),
    ("sentencepiece", None, {"model_type": "wordpiece"}, "model_type must be one of bpe, unigram"),
    ("sentencepiece", None, {"lowercase": True}, "has no option lowercase"),
])
def test_make_tokenizer_refuses_bad_settings(kind, vocab_size, options, message):
    with pytest.raises(ConfigError, match=message):
        make_tokenizer(kind, vocab_size, **options)


def _write(folder: Path, name: str, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    return folder


def test_load_tokenizer_errors(tmp_path, fitted):
    with pytest.raises(ModelFolderError, match="has no textgen_tokenizer.json"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(ModelFolderError, match="not readable JSON"):
        load_tokenizer(_write(tmp_path / "garbage", "tokenizer.json", b"\x89PNG{not json"))
    with pytest.raises(ModelFolderError, match="unknown tokenizer type 'morse'"):
        load_tokenizer(_write(tmp_path / "morse", "tokenizer.json", b'{"type": "morse"}'))
    with pytest.raises(ModelFolderError, match="unknown tokenizer type None"):
        load_tokenizer(_write(tmp_path / "list", "tokenizer.json", b"[1, 2]"))
    with pytest.raises(ModelFolderError, match="malformed"):
        load_tokenizer(_write(tmp_path / "char", "tokenizer.json", b'{"type": "char"}'))
    with pytest.raises(ModelFolderError, match="malformed"):
        load_tokenizer(_write(tmp_path / "word", "tokenizer.json", b'{"type": "word", "tokens": [1]}'))

    sp_folder = tmp_path / "sp"
    fitted["sentencepiece"].save(sp_folder)
    (sp_folder / "tokenizer.model").write_bytes(b"garbage")
    with pytest.raises(ModelFolderError, match="not a usable SentencePiece model"):
        load_tokenizer(sp_folder)
    (sp_folder / "tokenizer.model").unlink()
    with pytest.raises(ModelFolderError, match="no tokenizer.model"):
        load_tokenizer(sp_folder)


def test_saved_json_is_plain(tmp_path, fitted):
    fitted["word"].save(tmp_path)
    state = json.loads((tmp_path / "textgen_tokenizer.json").read_text(encoding="utf-8"))
    assert state["type"] == "word" and " sister" in state["tokens"]


@pytest.mark.parametrize("kind", ["word", "sentencepiece"])
def test_real_corpus_round_trip(kind):
    path = DATA / "alice.txt"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    text = path.read_text(encoding="utf-8")
    tokenizer = make_tokenizer(kind).fit(text)
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert len(ids) < len(text) / 2.5  # both compress well beyond one token per character
