"""corpus.read_text / read_file: every encoding we decode and every file we refuse."""
import codecs
import random
from pathlib import Path

import pytest

from textgen_core.corpus import MIN_CHARS, CorpusStats, read_file, read_text
from textgen_core.errors import CorpusError, TextgenError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Long enough to pass MIN_CHARS; non-ASCII on purpose.
POEM = (
    "“Café au lait,” she said — naïve, déjà vu, à la carte.\n"
    "The façade of the old théâtre glowed; it’s late, and the rôle is done.\n"
    "Señor Muñoz sang of Zürich, of crème brûlée and piñatas.\n"
) * 2
ASCII = "The quick brown fox jumps over the lazy dog.\n" * 6


def test_min_chars_is_sensible():
    assert 50 <= MIN_CHARS <= 1000


@pytest.mark.parametrize("prefix, encoding, expected_name", [
    (b"", "utf-8", "utf-8"),
    (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32"),
])
def test_unicode_encodings_with_and_without_bom(prefix, encoding, expected_name):
    text = POEM + "Emoji 🙂👍🏽 and 你好，世界.\n"
    corpus = read_text(prefix + text.encode(encoding), name="poem.txt")
    assert corpus.text == text  # the byte-order mark is gone
    assert corpus.encoding == expected_name
    assert corpus.name == "poem.txt"


def test_cp1252_curly_quotes_and_accents():
    corpus = read_text(POEM.encode("cp1252"))
    assert corpus.text == POEM
    assert corpus.encoding == "cp1252"


def test_latin1_accents():
    text = "Grüße aus München, schöne Straße. Ärger über Öl, Señor. Très bien, garçon.\n" * 4
    corpus = read_text(text.encode("latin-1"))
    assert corpus.text == text
    assert corpus.encoding in ("cp1252", "latin_1", "iso8859_15")


def test_other_legacy_encoding_goes_to_the_detector():
    text = "Привет, как дела? Это тест на русском языке. Всё хорошо, спасибо.\n" * 5
    corpus = read_text(text.encode("cp1251"))
    assert corpus.text == text
    assert corpus.encoding == "cp1251"


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_crlf_and_lone_cr_become_lf(newline):
    corpus = read_text(ASCII.replace("\n", newline).encode())
    assert corpus.text == ASCII


def test_mixed_line_endings_in_utf16():
    raw = "one\r\ntwo\rthree\nfour\r\n\r\nfive" + " padding" * 40
    corpus = read_text(codecs.BOM_UTF16_LE + raw.encode("utf-16-le"))
    assert corpus.text == "one\ntwo\nthree\nfour\n\nfive" + " padding" * 40
    assert "\r" not in corpus.text


def test_stats_on_a_known_text():
    text = "Hello world.\nHello again, world!\n\nEnd" + "." * 200
    stats = read_text(text.encode()).stats
    assert stats == CorpusStats(chars=len(text), distinct_chars=len(set(text)), words=6, lines=4)
    assert read_text((ASCII).encode()).stats.lines == 6  # a final "\n" adds no line


def test_empty_file_is_refused():
    with pytest.raises(CorpusError, match=r"song\.txt is empty \(0 bytes\)"):
        read_text(b"", name="song.txt")


def test_whitespace_only_is_refused():
    with pytest.raises(CorpusError, match="only whitespace"):
        read_text(b" \n\t\r\n   \n" * 100)


@pytest.mark.parametrize("data", [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(200),
    random.Random(0).randbytes(4000),
    ASCII.encode("utf-16-le"),  # UTF-16 without a byte-order mark
], ids=["png", "random", "utf16-no-bom"])
def test_files_with_nul_bytes_are_binary(data):
    with pytest.raises(CorpusError, match="binary file.*NUL bytes"):
        read_text(data, name="x.bin")


def test_undecodable_bytes_are_binary():
    data = bytes(b for b in random.Random(1).randbytes(6000) if b != 0)
    with pytest.raises(CorpusError, match="binary file.*not UTF-8 and match no known text encoding"):
        read_text(data)


def test_mostly_control_characters_are_binary():
    data = (b"\x01\x02\x03\x04\x1b[0m" + b"abc def ") * 60
    with pytest.raises(CorpusError, match=r"binary file.*\d+% of its characters are control characters"):
        read_text(data)


def test_a_few_control_characters_are_fine():
    text = ASCII * 3 + "\x0cpage two\x1b\n"
    assert read_text(text.encode()).text == text


def test_too_short_says_how_short():
    with pytest.raises(CorpusError, match=r"poem\.txt has only 12 characters; training needs at least "
                                          rf"{MIN_CHARS}\. Use a longer text\."):
        read_text(b"Hello world!", name="poem.txt")
    assert read_text(b"Hello world!", min_chars=5).text == "Hello world!"


def test_bad_bytes_after_a_bom_are_refused():
    with pytest.raises(CorpusError, match="UTF-8-SIG byte-order mark but is not valid"):
        read_text(codecs.BOM_UTF8 + b"abc\xff\xfe" * 100)


def test_errors_are_user_facing():
    assert issubclass(CorpusError, TextgenError)


def test_read_file(tmp_path):
    path = tmp_path / "lyrics.txt"
    path.write_bytes(POEM.replace("\n", "\r\n").encode("utf-8-sig"))
    corpus = read_file(path)
    assert (corpus.name, corpus.encoding, corpus.text) == ("lyrics.txt", "utf-8-sig", POEM)


def test_read_file_missing_path_and_folder(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(CorpusError, match=r"No such file: .*nope\.txt"):
        read_file(missing)
    with pytest.raises(CorpusError, match="is a folder, not a file"):
        read_file(tmp_path)


# Counts from shared/data/README.md; lines there count "\n", ours also count a last unterminated line.
REAL_CORPORA = {
    "tinyshakespeare.txt": (1_115_394, 65, 202_651, 40_000),
    "alice.txt": (144_600, 75, 26_525, 3_380),
    "lyrics_public_domain.txt": (279_856, 82, 51_062, 8_799),
}


@pytest.mark.parametrize("file_name", sorted(REAL_CORPORA))
def test_real_corpora_counts(file_name):
    path = DATA / file_name
    if not path.is_file():
        pytest.skip(f"{path} not present")
    corpus = read_file(path)
    assert corpus.encoding == "utf-8"
    stats = corpus.stats
    assert (stats.chars, stats.distinct_chars, stats.words, stats.lines) == REAL_CORPORA[file_name]
