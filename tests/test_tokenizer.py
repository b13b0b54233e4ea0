import pytest

from minigpt.errors import VocabularyError
from minigpt.tokenizer import CharTokenizer


def test_round_trip_and_sorted_vocabulary():
    tok = CharTokenizer.from_text("hello world\n")
    assert tok.chars == sorted(set("hello world\n"))
    assert tok.decode(tok.encode("low hold\n")) == "low hold\n"
    assert tok.vocab_size == 9


def test_unknown_characters_are_listed_once_each():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(VocabularyError, match=r"2 character\(s\).*'x' 'é'"):
        tok.encode("axxbé")


def test_unknown_policies():
    tok = CharTokenizer.from_text("abc ")
    assert tok.decode(tok.encode("a-b", unknown="skip")) == "ab"
    assert tok.decode(tok.encode("a-b", unknown=" ")) == "a b"
    with pytest.raises(VocabularyError, match="not a policy"):
        tok.encode("a-b", unknown="zz")


def test_empty_vocabulary_is_an_error():
    with pytest.raises(VocabularyError, match="empty"):
        CharTokenizer("")
