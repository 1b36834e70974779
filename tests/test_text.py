"""Text preprocessing: normalisation, tokenisation, the vocabulary, n-gram counts, prepared datasets."""

from collections import Counter

import pytest
import torch

from seqtool.data.dataset import load_corpus, prepare_text
from seqtool.core.errors import SeqtoolError
from seqtool.data.text import BOS, EOS, PAD, UNK, Vocab, detokenize, ngram_counts, normalize, text_tokens, tokenize

TRICKY = "  The Time-Machine, by H.G. Wells (1895)!\n\n\u00c9tait\tl\u00e0  "


# ---- normalize ---------------------------------------------------------------------------------
def test_normalize_letters_is_the_classic_recipe():
    # every run of non-[A-Za-z] characters (digits, punctuation, newlines, accented letters) -> one
    # space, lowercased, stripped at both ends
    assert normalize(TRICKY, "letters") == "the time machine by h g wells tait l"


def test_normalize_letters_collapses_runs_and_never_leaves_double_spaces():
    out = normalize("a--b  ,,c\n\n\nd", "letters")
    assert out == "a b c d"
    assert "  " not in normalize(TRICKY * 3, "letters")


def test_normalize_lower_only_lowercases():
    assert normalize(TRICKY, "lower") == TRICKY.lower()
    assert normalize("\u00c0B\u00c7 1,2", "lower") == "\u00e0b\u00e7 1,2"


def test_normalize_none_keeps_the_raw_text_but_unifies_line_ends():
    raw = "Ab\n\u00e9\U0001f600 \t1"
    assert normalize(raw, "none") == raw
    assert normalize("a\r\nb\rc\nd", "none") == "a\nb\nc\nd"  # mixed Windows / old Mac / Unix line ends


def test_normalize_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="letters, lower, none"):
        normalize("x", "upper")


# ---- tokenize ----------------------------------------------------------------------------------
def test_tokenize_char_keeps_every_character_including_spaces():
    assert tokenize("ab c", "char") == ["a", "b", " ", "c"]


def test_tokenize_word_splits_on_any_whitespace_and_ends_every_line_with_eos():
    assert tokenize("  the  cat\nsat\t", "word") == ["the", "cat", EOS, "sat", EOS]
    assert tokenize("a\n\nb\n", "word") == ["a", EOS, EOS, "b", EOS]  # an empty line is an <eos>; a final line end adds none
    assert tokenize("  the  cat\nsat\t", "word", eos=False) == ["the", "cat", "sat"]


def test_text_tokens_keeps_lines_through_the_letters_recipe_at_word_level():
    assert text_tokens("Hi, you!\r\n  Two -- lines\rend", "word", "letters") == ["hi", "you", EOS, "two", "lines", EOS, "end", EOS]
    assert text_tokens("Hi, you!\r\nTwo", "char", "letters") == list("hi you two")


def test_detokenize_inverts_tokenize():
    assert detokenize(tokenize("the time machine", "char"), "char") == "the time machine"
    assert detokenize(tokenize("the time machine", "word"), "word") == "the time machine\n"
    assert detokenize(tokenize("the time\nmachine\n\nx\n", "word"), "word") == "the time\nmachine\n\nx\n"


def test_tokenize_rejects_an_unknown_level():
    with pytest.raises(ValueError, match="char, word"):
        tokenize("x", "byte")


# ---- Vocab -------------------------------------------------------------------------------------
def test_vocab_unk_is_index_zero_and_reserved_tokens_follow_in_order():
    vocab = Vocab.build(list("abba"), reserved=(PAD, BOS, EOS))
    assert vocab.itos[:4] == [UNK, PAD, BOS, EOS]
    assert vocab.unk == 0 and vocab.index(UNK) == 0
    assert vocab.itos[4:] == ["a", "b"]


def test_vocab_reserved_unk_or_reserved_tokens_in_the_text_are_not_duplicated():
    vocab = Vocab.build(["<bos>", "x", "<bos>", "<unk>"], reserved=(UNK, BOS))
    assert vocab.itos == [UNK, BOS, "x"]


def test_vocab_orders_by_descending_frequency():
    tokens = list("cbbaaad")  # a:3 b:2 c:1 d:1
    assert Vocab.build(tokens).itos == [UNK, "a", "b", "c", "d"]


def test_vocab_ties_are_broken_by_first_appearance():
    assert Vocab.build(["x", "y", "y", "x", "z"]).itos == [UNK, "x", "y", "z"]
    assert Vocab.build(["y", "x", "x", "y", "z"]).itos == [UNK, "y", "x", "z"]
    # and the order is the same on every build (no hash-order dependence)
    words = "the cat sat on the mat and the dog sat on a log".split()
    assert Vocab.build(words).itos == Vocab.build(list(words)).itos
    assert Vocab.build(words).itos[1:4] == ["the", "sat", "on"]


def test_vocab_min_freq_cuts_rare_tokens_which_then_encode_to_unk():
    tokens = list("aaabbc")  # a:3 b:2 c:1
    assert Vocab.build(tokens, min_freq=0).itos == Vocab.build(tokens, min_freq=1).itos == [UNK, "a", "b", "c"]
    vocab = Vocab.build(tokens, min_freq=2)
    assert vocab.itos == [UNK, "a", "b"]
    assert "c" not in vocab
    assert vocab.encode(list("abc")) == [1, 2, 0]
    assert vocab.decode(vocab.encode(list("cab"))) == [UNK, "a", "b"]
    assert Vocab.build(tokens, min_freq=4).itos == [UNK]


def test_vocab_encode_decode_round_trip():
    text = "the time traveller for so it will be convenient to speak of him"
    tokens = tokenize(text, "word")
    vocab = Vocab.build(tokens)
    ids = vocab.encode(tokens)
    assert all(isinstance(i, int) for i in ids)
    assert vocab.decode(ids) == tokens
    assert vocab.decode(torch.tensor(ids)) == tokens
    assert len(vocab) == len(set(tokens)) + 1
    assert [vocab.index(t) for t in tokens] == ids
    assert vocab.index("never-seen") == 0
    assert Vocab(vocab.to_list()).stoi == vocab.stoi


def test_vocab_rejects_duplicates_and_a_missing_unk():
    with pytest.raises(ValueError, match="duplicate"):
        Vocab([UNK, "a", "b", "a"])
    with pytest.raises(ValueError, match="<unk>"):
        Vocab(["a", UNK])
    with pytest.raises(ValueError, match="<unk>"):
        Vocab([])


# ---- n-grams -----------------------------------------------------------------------------------
def test_ngram_counts_match_hand_counts_on_characters():
    tokens = list("abab")
    assert ngram_counts(tokens, 1) == Counter({("a",): 2, ("b",): 2})
    assert ngram_counts(tokens, 2) == Counter({("a", "b"): 2, ("b", "a"): 1})
    assert ngram_counts(tokens, 3) == Counter({("a", "b", "a"): 1, ("b", "a", "b"): 1})
    assert ngram_counts(tokens, 5) == Counter()


def test_ngram_counts_match_hand_counts_on_words():
    tokens = "the cat saw the cat and the dog".split()
    bigrams = ngram_counts(tokens, 2)
    assert bigrams == Counter({
        ("the", "cat"): 2, ("cat", "saw"): 1, ("saw", "the"): 1, ("cat", "and"): 1, ("and", "the"): 1, ("the", "dog"): 1,
    })
    assert sum(bigrams.values()) == len(tokens) - 1
    trigrams = ngram_counts(tokens, 3)
    assert trigrams[("saw", "the", "cat")] == 1 and sum(trigrams.values()) == len(tokens) - 2


# ---- prepared datasets -------------------------------------------------------------------------
def test_prepare_text_counts_and_ids():
    data = prepare_text("Abc, abd!", level="char", clean="letters")
    assert data.tokens() == list("abc abd")
    assert data.vocab.itos == [UNK, "a", "b", "c", " ", "d"]
    assert data.counts == [0, 2, 2, 1, 1, 1]
    assert data.ids.dtype == torch.uint8  # the smallest type that holds the vocabulary


def test_prepare_text_needs_two_tokens():
    with pytest.raises(SeqtoolError, match="at least 2"):
        prepare_text("!!! 123", level="char", clean="letters")


def test_prepared_dataset_round_trips_through_a_file(tmp_path):
    data = prepare_text("the cat sat on the mat " * 3, level="word", clean="lower", min_freq=2)
    path = tmp_path / "tiny.data"
    data.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.data"]  # no temp files left
    # the level/clean arguments are ignored: a prepared dataset carries its own settings
    loaded = load_corpus(str(path), level="char", clean="none", min_freq=0)
    assert loaded.vocab.itos == data.vocab.itos
    assert torch.equal(loaded.ids, data.ids)
    assert (loaded.level, loaded.clean, loaded.counts) == ("word", "lower", data.counts)
