import pytest
import torch

from seqtool.core.errors import SeqtoolError
from seqtool.translate.pairs import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Pair,
    build_vocab,
    decoder_input,
    detokenize,
    encode,
    filter_length,
    group_references,
    learn_spacing,
    normalize_sentence,
    parse_aligned,
    parse_pairs,
    reverse_pairs,
    sentence_key,
    split_by_source,
    strip_ids,
    tokenize_sentence,
)


@pytest.mark.parametrize(
    "raw, normalized",
    [
        ("Go.", "go ."),
        ("Va\u202f!", "va !"),  # narrow no-break space
        ("Je suis chez moi.", "je suis chez moi ."),
        ("I'm home.", "i'm home ."),
        ("J\u2019ai perdu.", "j'ai perdu ."),  # curly apostrophe
        ("Oui,\xa0merci\u2009!", "oui , merci !"),
        ("Wait!Really?", "wait ! really ?"),
        ("It costs 3.50, ok?", "it costs 3.50 , ok ?"),
        ("«\u00a0Non\u00a0»", "« non »"),
        ("Est-ce   vrai ?", "est-ce vrai ?"),
    ],
)
def test_normalize_sentence(raw, normalized):
    assert normalize_sentence(raw) == normalized


def test_tokens_are_words_and_punctuation():
    assert tokenize_sentence("He's calm.") == ["he's", "calm", "."]
    assert tokenize_sentence("Attends, quoi ?") == ["attends", ",", "quoi", "?"]


def test_spacing_is_learned_from_the_corpus():
    assert learn_spacing(["Va !", "Quoi ?", "Salut.", "Cours\u202f!"]) == "!?"
    assert learn_spacing(["Go!", "What?", "Hi."]) == ""


@pytest.mark.parametrize(
    "tokens, spaced, text",
    [
        ("je suis chez moi .", "!?;:", "je suis chez moi."),
        ("va !", "!?;:", "va !"),
        ("go !", "", "go!"),
        ("attends , quoi ?", "", "attends, quoi?"),
        ("i'm home .", "", "i'm home."),
    ],
)
def test_detokenize(tokens, spaced, text):
    assert detokenize(tokens.split(), spaced) == text


def test_parse_pairs_ignores_extra_columns_and_blank_lines():
    pairs = parse_pairs(["Go.\tVa !\tCC-BY tatoeba #1\n", "\n", "Hi.\tSalut.\r\n"])
    assert pairs == [Pair("Go.", "Va !"), Pair("Hi.", "Salut.")]


def test_line_without_tab_is_an_error_naming_the_line():
    with pytest.raises(SeqtoolError, match=r"line 2: no tab"):
        parse_pairs(["Go.\tVa !", "Hi. Salut."], "x.txt")


@pytest.mark.parametrize("line, side", [("\tVa !", "source"), ("Go.\t  ", "target"), ("Go.\t\tattribution", "target")])
def test_empty_side_is_an_error(line, side):
    with pytest.raises(SeqtoolError, match=f"line 1: empty {side} side"):
        parse_pairs([line])


def test_aligned_files():
    assert parse_aligned(["Go.", "Hi.", ""], ["Va !", "Salut.", "", ""]) == [Pair("Go.", "Va !"), Pair("Hi.", "Salut.")]
    with pytest.raises(SeqtoolError, match="2 lines but target has 1"):
        parse_aligned(["Go.", "Hi."], ["Va !"])
    with pytest.raises(SeqtoolError, match="line 2: empty target side"):
        parse_aligned(["Go.", "Hi.", "Yo."], ["Va !", " ", "Yo !"])


def test_reverse_and_length_filter():
    pairs = [Pair("Go.", "Va !"), Pair("I lost my keys.", "J'ai perdu mes clés.")]
    assert reverse_pairs(pairs) == [Pair("Va !", "Go."), Pair("J'ai perdu mes clés.", "I lost my keys.")]
    assert filter_length(pairs, 4) == [Pair("Go.", "Va !")]  # 5 tokens on both sides of the second
    assert filter_length(pairs, 5) == pairs


def test_vocab_specials_at_fixed_indices_and_min_freq():
    vocab = build_vocab(["go .", "go away .", "hi ."], min_freq=2)
    assert vocab.itos[:4] == ["<unk>", "<pad>", "<bos>", "<eos>"]
    assert (UNK_ID, PAD_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert vocab.itos[4:] == [".", "go"]  # 'away' and 'hi' seen once
    assert vocab.index("hi") == UNK_ID


def test_encode_appends_eos_pads_and_truncates_with_valid_lengths():
    vocab = build_vocab(["a b c d e"], min_freq=1)
    a, b, c = (vocab.index(t) for t in "abc")
    ids, lengths = encode(["a b", "a b c d e", "zzz"], vocab, steps=4)
    assert ids.tolist() == [[a, b, EOS_ID, PAD_ID], [a, b, c, vocab.index("d")], [UNK_ID, EOS_ID, PAD_ID, PAD_ID]]
    assert lengths.tolist() == [3, 4, 2]


def test_teacher_forcing_shift():
    target = torch.tensor([[7, 8, EOS_ID, PAD_ID]])
    assert decoder_input(target).tolist() == [[BOS_ID, 7, 8, EOS_ID]]


def test_strip_ids_stops_at_eos():
    assert strip_ids([5, BOS_ID, 6, EOS_ID, 7]) == [5, 6]


def test_split_by_source_keeps_every_source_on_one_side_and_is_seeded():
    pairs = [Pair(f"s{i % 50}.", f"t{i}.") for i in range(200)]  # 50 sources, 4 translations each
    train, val = split_by_source(pairs, 0.2, seed=3)
    assert len(train) + len(val) == 200
    assert {p.source for p in train}.isdisjoint({p.source for p in val})
    assert len({p.source for p in val}) == 10 and len(val) == 40
    assert split_by_source(pairs, 0.2, seed=3) == (train, val)
    assert split_by_source(pairs, 0.2, seed=4)[1] != val


@pytest.mark.parametrize("seed", range(4))
def test_split_groups_sources_that_differ_only_in_case_or_punctuation(seed):
    pairs = [Pair("Go.", "Va !"), Pair("go !", "Marche."), Pair("Go!", "Bouge !"), Pair("Hi.", "Salut."), Pair("Run!", "Cours !")]
    train, val = split_by_source(pairs, 0.34, seed=seed)
    go = {"Va !", "Marche.", "Bouge !"}  # the three spellings of "go" stay together
    assert go <= {p.target for p in train} or go <= {p.target for p in val}
    assert sentence_key("Wait... what?!") == ("wait", "what") and sentence_key("it's 3.50.") == ("it's", "3.50")


def test_group_references_by_normalised_source():
    pairs = [Pair("Go.", "Va !"), Pair("Hi.", "Salut."), Pair("go .", "Marche.")]
    assert group_references(pairs) == (["Go.", "Hi."], [["Va !", "Marche."], ["Salut."]])
