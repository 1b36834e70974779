"""Subword vocabularies (sentencepiece BPE and unigram): learning, exact detokenisation, the
model kept inside the run, translators trained on subwords end to end, and the bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seqtool.cli import main
from seqtool.core.errors import SeqtoolError
from seqtool.data.subword import Subwords
from seqtool.data.corpora import locate
from seqtool.translate import pairs as P

SMALL = ["--embed", "16", "--hidden", "32", "--layers", "1", "--dropout", "0", "--batch", "32", "--steps", "16",
         "--lr", "0.01", "--threads", "1", "--max-seconds", "0", "--quiet"]


def fra_eng(lines: int) -> list[P.Pair]:
    with open(locate("fra-eng"), encoding="utf-8") as fh:
        return P.parse_pairs([next(fh) for _ in range(lines)])


@pytest.fixture(scope="module")
def french():
    return [P.normalize_sentence(p.target) for p in fra_eng(1500)]


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_pieces_spell_the_sentence_back_exactly_and_survive_the_state(kind, french):
    model = Subwords.learn(french, kind, 300)
    assert len(model.vocabulary()) == 300 - 3  # sentencepiece's <unk> <s> </s> are seqtool's specials instead
    for sentence in french[:200] + ["ça ira, zébulon !"]:
        pieces = model.pieces(sentence)
        assert model.text(pieces) == sentence
    assert len(model.pieces(french[10])) >= len(french[10].split())  # never fewer pieces than words
    again = Subwords.from_state(json.loads(json.dumps(model.state())))  # plain JSON-able text, weights-only safe
    assert all(again.pieces(s) == model.pieces(s) for s in french[:50])


def test_vocabulary_sizes_outside_the_usable_range_name_the_range(french):
    for size in (5, 1_000_000):
        with pytest.raises(SeqtoolError) as info:
            Subwords.learn(french, "bpe", size, "the training targets")
        message = str(info.value)
        assert message.startswith(f"--vocab-size {size} does not fit the training targets (1,500 lines): a bpe vocabulary here "
                                  "can have ") and message.endswith(" pieces") and "\n" not in message
        low, high = (int(v.replace(",", "")) for v in message.split("can have ")[1].split(" pieces")[0].split(" to "))
    Subwords.learn(french, "bpe", low)  # both ends of the range it states are usable
    Subwords.learn(french, "bpe", high)
    with pytest.raises(SeqtoolError, match="damaged"):
        Subwords.from_state({"kind": "bpe", "model": "not base64!"})


def test_a_large_text_is_learnt_from_a_uniform_sample_drawn_as_it_streams(monkeypatch):
    from seqtool.data import subword
    from seqtool.data.subword import sample_lines

    lines = [f"line {i}" for i in range(100_000)]
    assert sample_lines(iter(lines[:50]), 100) == (lines[:50], 50)  # all of a small text, in order
    kept, total = sample_lines(iter(lines), 1_000)
    assert total == 100_000 and len(kept) == 1_000 and len(set(kept)) == 1_000 and set(kept) <= set(lines)
    assert sample_lines(iter(lines), 1_000) == (kept, total)  # seeded
    positions = np.array([int(line.split()[1]) for line in kept])
    assert abs(positions.mean() - 50_000) < 3_000 and (positions > 90_000).sum() > 50  # the whole text, not its head
    monkeypatch.setitem(subword.LEARN_LINES, "bpe", 200)
    seen = []
    text = (f"w{i % 7} x{i % 5} y{i % 3}" for i in range(10_000))
    Subwords.learn((seen.append(s) or s for s in text), "bpe", 16)
    assert len(seen) == 10_000  # every line was read, one at a time
    with pytest.raises(SeqtoolError, match=r"\(10,000 lines, 200 of them sampled\)"):
        Subwords.learn((f"w{i % 7} x{i % 5} y{i % 3}" for i in range(10_000)), "bpe", 5000)


def test_a_side_turns_sentences_into_pieces_and_back_into_words(french):
    side = P.Side(Subwords.learn(french, "unigram", 400))
    vocab = side.vocab(french, min_freq=5)
    assert vocab.itos[:4] == list(P.SPECIALS) and len(vocab) == 4 + 397
    tokens = side.tokens("Je suis chez moi.")
    assert side.words(tokens) == ["je", "suis", "chez", "moi", "."]
    assert P.detokenize(side.words(tokens), "!?") == "je suis chez moi."
    ids, lengths = P.encode(["Je suis chez moi."], vocab, 20, side)
    assert int(lengths[0]) == len(tokens) + 1 and int(ids[0, len(tokens)]) == P.EOS_ID
    assert P.UNK_ID not in ids[0, : len(tokens)].tolist()


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bpe")
    corpus = folder / "slice.tsv"
    with open(locate("fra-eng"), encoding="utf-8") as fh:
        corpus.write_text("".join(next(fh) for _ in range(600)), encoding="utf-8")
    with pytest.raises(SystemExit) as done:
        main(["train", str(corpus), *SMALL, "--epochs", "4", "--level", "bpe", "--vocab-size", "300", "--out", str(folder / "run")])
    assert done.value.code == 0
    return folder / "run"


def test_a_subword_translator_trains_restores_and_writes_plain_text(cli, bpe_run):
    rows = [json.loads(line) for line in (bpe_run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    state = torch.load(bpe_run / "checkpoints" / "best.pt", weights_only=True)["task_state"]
    assert state["src_subwords"]["kind"] == state["tgt_subwords"]["kind"] == "bpe"  # the models travel in the checkpoint
    assert len(state["src_vocab"]) == len(state["tgt_vocab"]) == 4 + 297
    result = cli("translate", "--checkpoint", str(bpe_run), "I'm home.", "Zyzzyva quixotically!")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 2 and all("▁" not in line and "<unk>" not in line for line in lines)
    tokenized = cli("translate", "--checkpoint", str(bpe_run), "--tokenized", "I'm home.").out.strip()
    assert "▁" not in tokenized and P.detokenize(tokenized.split(), "!?;:") == lines[0]  # words and marks, as a word model writes them
    record = json.loads(cli("translate", "--checkpoint", str(bpe_run), "--json", "--beam", "3", "--nbest", "3", "I lost.").out)
    assert record["source_tokens"][0].startswith("▁") and all("<unk>" not in t["text"] for t in record["translations"])


def test_eval_scores_detokenised_text_as_the_report_did(cli, bpe_run):
    scored = json.loads(cli("eval", str(bpe_run), "--json").out)  # the test half, decoded as the report was (the run's beam)
    report = json.loads((bpe_run / "report.json").read_text())["test"]
    assert scored["sources"] == report["test_sources"] and scored["chrf"] > 0
    assert (scored["bleu"], scored["chrf"]) == (pytest.approx(report["test_bleu"]), pytest.approx(report["test_chrf"]))
    assert scored["bleu_signature"].startswith("nrefs:var|") and "tok:13a" in scored["bleu_signature"]


def test_joint_vocabulary_is_one_model_for_both_sides(tmp_path):
    from seqtool.core.spec import RunSpec, apply_overrides
    from seqtool.translate.task import TranslationTask

    corpus = tmp_path / "p.tsv"
    with open(locate("fra-eng"), encoding="utf-8") as fh:
        corpus.write_text("".join(next(fh) for _ in range(400)), encoding="utf-8")
    spec = apply_overrides(RunSpec(), {"task": "translate", "data.corpus": str(corpus), "data.level": "unigram", "data.vocab_size": 300,
                                       "translate.joint_vocab": True})
    task = TranslationTask.from_spec(spec)
    assert task.src_vocab.itos == task.tgt_vocab.itos and task.src_side.subwords is task.tgt_side.subwords
    again = TranslationTask.from_checkpoint(spec, task.task_state())
    assert again.src_vocab.itos == task.src_vocab.itos and again.source_tokens("Hello!") == task.source_tokens("Hello!")


@pytest.mark.parametrize("args, message", [
    (["--level", "char"], "--level char: translation reads word, bpe or unigram tokens"),
    (["--joint-vocab"], "--joint-vocab shares one subword vocabulary between the sides: give --level bpe or unigram"),
    (["--level", "bpe", "--min-freq", "3"], "--level bpe: every piece of the subword vocabulary is kept; --min-freq does not apply"),
    (["--level", "bpe", "--vocab-size", "5"], "--vocab-size 5 does not fit the training sources (4 lines): a bpe vocabulary here can have"),
])
def test_bad_subword_requests_are_one_line_errors(cli, tmp_path, args, message):
    corpus = tmp_path / "p.tsv"
    corpus.write_text("Go.\tVa !\nHi.\tSalut !\nRun!\tCours !\nWho?\tQui ?\nWow!\tÇa alors !\nFire!\tAu feu !\n", encoding="utf-8")
    result = cli("train", str(corpus), *SMALL, "--epochs", "1", "--val-fraction", "0.34", "--out", "r", *args)
    assert result.code != 0 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err


def test_resuming_with_another_level_or_vocabulary_size_is_refused(cli, bpe_run, tmp_path):
    result = cli("train", "--resume", str(bpe_run), "--vocab-size", "400", "--quiet")
    assert result.code != 0 and "--vocab-size" in result.err and len(result.err.strip().splitlines()) == 1, result.err
    result = cli("train", "--resume", str(bpe_run), "--level", "word", "--quiet")
    assert result.code != 0 and "--level" in result.err, result.err


# ---- language models on subwords --------------------------------------------------------------------------------
def test_a_bpe_language_model_trains_samples_plain_text_and_reports_bits_per_character(cli):
    from tests.conftest import TINY

    result = cli("train", "timemachine", *TINY, "--level", "bpe", "--vocab-size", "500", "--epochs", "2", "--max-tokens", "20000",
                 "--lr", "0.01", "--seed", "1", "--out", "bpe")
    assert result.code == 0, result.err
    state = torch.load(Path("bpe/checkpoints/best.pt"), weights_only=True)["task_state"]
    assert state["level"] == "bpe" and state["subwords"]["kind"] == "bpe" and len(state["vocab"]) == 2 + 497
    sampled = cli("sample", "--checkpoint", "bpe", "--prefix", "The Time Traveller", "--length", "30", "--seed", "3", "--num", "2")
    assert sampled.code == 0, sampled.err
    lines = sampled.out.splitlines()
    assert len(lines) == 2 and all(line.startswith("the time traveller") for line in lines)
    assert all("\u2581" not in line and "<unk>" not in line for line in lines)
    streamed = cli("sample", "--checkpoint", "bpe", "--prefix", "The Time Traveller", "--length", "30", "--seed", "3")
    whole = cli("sample", "--checkpoint", "bpe", "--prefix", "The Time Traveller", "--length", "30", "--seed", "3", "--json")
    assert streamed.out.rstrip("\n") == json.loads(whole.out)["text"]  # what streams is what is returned
    scored = json.loads(cli("eval", "bpe", "--json").out)
    report = json.loads(Path("bpe/report.json").read_text())["test"]
    assert scored["level"] == "bpe" and scored["bits_per_char"] == pytest.approx(report["test_bits_per_char"], rel=1e-5)
    # letters only: every piece spells its letters and '▁' a space, so the test text's characters are counted exactly
    from seqtool.data.corpora import locate
    from seqtool.data.text import normalize

    text = normalize(locate("timemachine").read_text(encoding="utf-8"), "letters")
    assert scored["characters"] <= len(text) * 0.06 and scored["bits_per_char"] < scored["bits_per_token"]


def test_a_subword_token_store_carries_its_model_and_trains(cli, tmp_path):
    corpus = tmp_path / "wp"
    corpus.mkdir()
    for name in ("train", "valid", "test"):
        with open(locate(f"warandpeace-{name}"), encoding="utf-8") as fh:
            (corpus / f"{name}.txt").write_text("".join(next(fh) for _ in range(600 if name == "train" else 100)), encoding="utf-8")
    made = cli("preprocess", str(corpus), "--level", "unigram", "--vocab-size", "400", "--clean", "none", "--out", "wp.tokens", "--json")
    assert made.code == 0, made.err
    stats = json.loads(made.out)
    assert stats["level"] == "unigram" and stats["types"] == 2 + 397 and stats["unk_tokens"] == 0
    from seqtool.data.dataset import open_prepared

    store = open_prepared(Path("wp.tokens"), "wp.tokens")
    assert store.subwords.kind == "unigram" and set(store.splits) == {"train", "valid", "test"}
    line = (corpus / "valid.txt").read_text(encoding="utf-8").splitlines()[3]
    assert store.subwords.text(store.subwords.pieces(line)) == " ".join(line.split())  # spaces as sentencepiece keeps them
    from tests.conftest import TINY

    trained = cli("train", "wp.tokens", *TINY, "--epochs", "1", "--out", "run")
    assert trained.code == 0, trained.err
    assert json.loads(cli("eval", "run", str(corpus / "test.txt"), "--json").out)["level"] == "unigram"
    too_big = cli("preprocess", str(corpus), "--level", "bpe", "--vocab-size", "100000")
    assert too_big.code == 1 and "a bpe vocabulary here can have" in too_big.err and len(too_big.err.strip().splitlines()) == 1
    refused = cli("preprocess", str(corpus), "--level", "bpe", "--min-freq", "2")  # 0 or 1 keep everything: allowed
    assert refused.code == 2 and "--min-freq and --reserved do not apply" in refused.err


def test_pieces_spell_their_characters_for_bits_per_character():
    from seqtool.data.text import Vocab
    from seqtool.lm.task import spelled_sizes

    vocab = Vocab(["<unk>", "<eos>", "\u2581the", "\u2581c", "at", "\u2581é"])
    ids = torch.tensor(vocab.encode(["\u2581the", "\u2581c", "at", "<eos>", "<eos>", "\u2581é"]))
    # ' the cat' + '' + '\n' (the empty line) + ' é': the first '▁' of a line stands for the line end before it
    assert spelled_sizes(vocab, "bpe", [0] * 6, ids) == (4 + 2 + 2 + 0 + 1 + 2, 4 + 2 + 2 + 0 + 1 + 3)


@pytest.mark.parametrize("distinct", [0.0, 1.0], ids=["line-by-line", "word-at-a-time"])
@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_encoding_lines_in_numpy_equals_looking_up_every_piece(french, monkeypatch, kind, distinct):
    from seqtool.data import subword
    from seqtool.data.store import TextSource, encode_chunks
    from seqtool.data.text import EOS, UNK, Vocab

    monkeypatch.setattr(subword, "MAX_DISTINCT_WORDS", distinct)  # 1.0: BPE always word at a time, 0.0: never
    monkeypatch.setattr(subword, "WORD_BLOCK", 7)  # many blocks of lines, sharing one table of distinct words
    model = Subwords.learn(french, kind, 300)
    vocab = Vocab([UNK, EOS] + model.vocabulary())
    # an empty line, characters never learnt (one run of two), spaces sentencepiece collapses or
    # normalises (two spaces, a tab, no-break and ideographic spaces), a combining accent, a
    # full-width letter, a word that is only a space mark, leading and trailing spaces
    text = ("je suis chez moi .\n\nça ira , zébulon €€\nva !\n  deux  espaces\tet\u00a0un\u3000mot \n"
            "e\u0301te\u0301 \uff21 \u2581 ! \n" + "\n".join(french[:300]) + "\n")
    ids = np.concatenate(list(encode_chunks(TextSource("t", text=text), vocab, kind, "none", model)))
    expected = [i for line in text.split("\n")[:-1] for i in (*vocab.encode(model.pieces(line)), vocab.index(EOS))]
    assert ids.tolist() == expected and ids.dtype == np.uint16


def test_natural_text_is_encoded_a_distinct_word_at_a_time(french, monkeypatch):
    """The default threshold sends a natural chunk (words repeat) through the word-at-a-time path and
    text of ever-new words line by line; both give what line-by-line encoding gives."""
    from seqtool.data.text import EOS, UNK, Vocab

    model = Subwords.learn(french, "bpe", 300)
    table = model.id_table(Vocab([UNK, EOS] + model.vocabulary()).stoi, np.uint16)
    calls = []
    word_at_a_time = Subwords._ids_of_words
    monkeypatch.setattr(Subwords, "_ids_of_words", lambda self, *a: calls.append(word_at_a_time(self, *a)) or calls[-1])
    natural = french * 4  # 6,000 lines of 1,500 sentences: a few per cent of the words are distinct
    new_words = [" ".join(f"{w}{i}{j}" for j, w in enumerate(line.split())) for i, line in enumerate(french)]
    for lines, word_at_a_time_answered in ((natural, True), (new_words, False)):
        calls.clear()
        ids = model.ids_of_lines(lines, table, 1)
        assert [answer is not None for answer in calls] == [word_at_a_time_answered]
        rows = model._sp.encode(lines, out_type=int)
        assert ids.tolist() == [i for row in rows for i in (*table[row].tolist(), 1)]


def test_a_subword_model_learns_from_the_training_part_only():
    from seqtool.data.store import TextSource, learning_lines

    lines = [f"line {i} alpha" for i in range(90)] + [f"tail {i} zzyzx" for i in range(10)]
    text = "\n".join(lines) + "\n"
    learnt = list(learning_lines(TextSource("t", text=text), "none", 0.9))
    assert learnt[:-1] == lines[: len(learnt) - 1] and lines[len(learnt) - 1].startswith(learnt[-1])  # the last one maybe cut
    assert 85 <= len(learnt) <= 90  # it stops before the held-out tail (by UTF-8 bytes)
    assert not any("zzyzx" in line for line in learnt)
    assert list(learning_lines(TextSource("t", text=text), "none", 1.0)) == lines


def test_a_text_of_one_long_line_learns_from_the_words_before_the_tail():
    from seqtool.data.store import TextSource, learning_lines

    text = " ".join(f"w{i}" for i in range(1000))
    (learnt,) = learning_lines(TextSource("t", text=text), "none", 0.5)
    assert text.startswith(learnt) and 0.45 * len(text) < len(learnt) <= 0.5 * len(text) and not learnt.endswith(" ")


def test_a_joint_vocabulary_translator_through_the_cli(cli, tmp_path):
    corpus = tmp_path / "slice.tsv"
    with open(locate("fra-eng"), encoding="utf-8") as fh:
        corpus.write_text("".join(next(fh) for _ in range(400)), encoding="utf-8")
    result = cli("train", str(corpus), *SMALL, "--epochs", "2", "--level", "unigram", "--vocab-size", "250", "--joint-vocab",
                 "--tie-weights", "--out", "joint")
    assert result.code == 0, result.err
    saved = torch.load(Path("joint/checkpoints/best.pt"), weights_only=True)
    state = saved["task_state"]
    assert state["src_subwords"] == state["tgt_subwords"] and state["src_vocab"] == state["tgt_vocab"]
    weights = saved["model"]  # one matrix: source embedding, target embedding and output layer
    assert torch.equal(weights["src_embed.weight"], weights["tgt_embed.weight"]) and torch.equal(weights["out.embedding.weight"], weights["src_embed.weight"])
    out = cli("translate", "--checkpoint", "joint", "Go.", "I'm home.")
    assert out.code == 0 and len(out.out.splitlines()) == 2 and "\u2581" not in out.out and "<unk>" not in out.out
    scored = json.loads(cli("eval", "joint", "--json").out)
    assert scored["sources"] >= 1 and 0 <= scored["bleu"] <= 100
    assert cli("export", "joint").code == 0
    assert cli("translate", "--checkpoint", "joint", "--engine", "onnxruntime", "Go.", "I'm home.").out == out.out
    resumed = cli("train", "--resume", "joint", "--epochs", "3", "--quiet")
    assert resumed.code == 0, resumed.err  # the tied model is rebuilt from the saved spec and loads
