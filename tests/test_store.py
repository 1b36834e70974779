"""Token stores and the word-benchmark layout: streaming preprocess equals tokenising the whole text,
stores round-trip through a memory map in the smallest id type, DIR/{train,valid,test}.txt trains
with the vocabulary of train only, <eos> at line ends, <unk> counted, and the adaptive softmax."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from seqtool.core.errors import SeqtoolError
from seqtool.data.batching import make_batches
from seqtool.data.dataset import LAYOUT, load_corpus, prepare_sources, prepare_text
from seqtool.data.store import TextSource, id_dtype, is_store
from seqtool.data.text import EOS, UNK, Vocab, text_tokens
from seqtool.nn.lm import RNNLM, adaptive_cutoffs
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "corpora"


def one_error_line(result, code: int) -> str:
    assert result.code == code, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqtool: error: ") and "Traceback" not in result.err, result.err
    return lines[0]


def messy_text(seed: int) -> str:
    """Text with the cases chunking could get wrong: runs of non-letters, every kind of line end,
    empty lines, multi-byte characters and leading/trailing junk."""
    rng = random.Random(seed)
    pieces = ["the", "Time", "machine", "é", "naïve", "--", ",", "  ", "\n", "\r\n", "\r", "\n\n", "!!", "x", "😀", "42", "\t"]
    return "".join(rng.choice(pieces) + rng.choice(["", " "]) for _ in range(rng.randint(50, 400)))


# ---- streaming equals whole ----------------------------------------------------------------------
@pytest.mark.parametrize("level", ["char", "word"])
@pytest.mark.parametrize("clean", ["letters", "lower", "none"])
def test_chunked_encoding_equals_tokenising_the_whole_text(tmp_path, level, clean):
    for seed in range(8):
        text = messy_text(seed)
        if seed >= 6:  # one long line: characters are cut inside it, words wait for its end
            text = text.replace("\r", " ").replace("\n", " ") + "\r\n"
        tokens = text_tokens(text, level, clean)
        if len(tokens) < 2:
            continue
        expected = Vocab.build(tokens, reserved=(EOS,) if level == "word" else ())
        path = tmp_path / f"t{seed}.txt"
        path.write_bytes(text.encode("utf-8"))
        for chunk in (7, 64, 1 << 20):  # chunks cut mid-run, mid-line and not at all
            data = prepare_sources([TextSource(str(path), path=path, chunk=chunk)], level, clean)
            assert data.vocab.itos == expected.itos, (seed, chunk)
            assert data.ids.tolist() == expected.encode(tokens), (seed, chunk)
            assert data.counts == [data.ids.tolist().count(i) for i in range(len(data.vocab))]


def test_a_decoding_error_names_the_byte_offset_in_the_whole_file(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ab\n" * 40 + b"x\xe9y\n")
    with pytest.raises(SeqtoolError, match=r"not valid utf-8 \(byte 0xe9 at offset 121\)"):
        prepare_sources([TextSource(str(path), path=path, chunk=16)], "char", "none")


# ---- the store -----------------------------------------------------------------------------------
def test_id_type_is_the_smallest_that_holds_the_vocabulary():
    assert [id_dtype(n) for n in (2, 256, 257, 65536, 65537)] == [np.uint8, np.uint8, np.uint16, np.uint16, np.uint32]


@pytest.mark.parametrize("size, dtype", [(40, torch.uint8), (700, torch.uint16)])
def test_store_round_trips_through_a_memory_map(tmp_path, size, dtype):
    words, rng = [f"w{i}" for i in range(size)], random.Random(0)
    text = " ".join(rng.choice(words) for _ in range(20 * size))
    data = prepare_text(text, "word", "none")
    path = tmp_path / "corpus.tokens"
    data.save(path)
    assert is_store(path) and [p.name for p in tmp_path.iterdir()] == ["corpus.tokens"]
    loaded = load_corpus(str(path), "char", "letters", 0)  # a store carries its own settings
    assert loaded.ids.dtype == dtype and torch.equal(loaded.ids.long(), data.ids.long())
    assert (loaded.vocab.itos, loaded.counts, loaded.level, loaded.clean) == (data.vocab.itos, data.counts, "word", "none")
    assert path.stat().st_size - loaded.ids.numel() * loaded.ids.element_size() < 64 * size  # ids + a small footer
    address = loaded.ids.data_ptr()
    maps = [line.split() for line in Path("/proc/self/maps").read_text().splitlines() if line.endswith(str(path))]
    assert any(int(a, 16) <= address < int(b, 16) for a, b in (m[0].split("-") for m in maps))  # read in place, not copied


def test_damaged_stores_are_refused_in_one_line(tmp_path):
    path = tmp_path / "c.tokens"
    prepare_text("abcabcabd" * 10, "char", "none").save(path)
    raw = path.read_bytes()
    (tmp_path / "cut.tokens").write_bytes(raw[:10] + raw[-16:])
    with pytest.raises(SeqtoolError, match="damaged seqtool token store"):
        load_corpus(str(tmp_path / "cut.tokens"), "char", "none", 0)
    (tmp_path / "big.tokens").write_bytes(b"\xff" + raw[1:])  # an id beyond the vocabulary
    with pytest.raises(SeqtoolError, match="damaged seqtool dataset"):
        load_corpus(str(tmp_path / "big.tokens"), "char", "none", 0)


def test_batches_from_a_store_equal_batches_from_int64(tmp_path):
    data = prepare_text("the quick brown fox jumps over the lazy dog " * 40, "char", "none")
    for sampling in ("sequential", "random"):
        small = list(make_batches(data.ids, 4, 9, sampling, torch.Generator().manual_seed(3)))
        wide = list(make_batches(data.ids.long(), 4, 9, sampling, torch.Generator().manual_seed(3)))
        assert len(small) == len(wide) > 0
        for (x, y), (x2, y2) in zip(small, wide):
            assert x.dtype == torch.long and torch.equal(x, x2) and torch.equal(y, y2)


def test_training_on_a_store_matches_training_on_the_text(cli, tiny_text, tmp_path):
    store = tmp_path / "tiny.tokens"
    assert cli("preprocess", tiny_text, "--clean", "none", "--out", store, "--json").code == 0
    runs = []
    for name, corpus in (("text", tiny_text), ("store", store)):
        result = cli("train", corpus, *TINY, "--clean", "none", "--epochs", "2", "--out", tmp_path / name)
        assert result.code == 0, result.err
        runs.append(json.loads((tmp_path / name / "report.json").read_text()))
    assert runs[0]["best"]["val_ppl"] == runs[1]["best"]["val_ppl"] and runs[0]["test"] == runs[1]["test"]


# ---- the train/valid/test layout -----------------------------------------------------------------
def write_layout(root: Path, train: str, valid: str, test: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in zip(LAYOUT, (train, valid, test)):
        (root / f"{name}.txt").write_bytes(text.encode("utf-8"))
    return root


def test_layout_takes_the_vocabulary_from_train_and_ends_lines_with_eos(tmp_path):
    root = write_layout(tmp_path / "c", "a b\nb c\r\n<unk> a\n", "a zebra\r\n", "b c\rquagga\n")
    data = load_corpus(str(root), "word", "none", 0)
    assert data.vocab.itos == [UNK, EOS, "a", "b", "c"]  # valid/test words never enter it; <unk> in the text is <unk>
    assert [data.vocab.decode(data.part(name).tolist()) for name in LAYOUT] == [
        ["a", "b", EOS, "b", "c", EOS, UNK, "a", EOS], ["a", UNK, EOS], ["b", "c", EOS, UNK, EOS]]


def test_train_a_layout_select_on_valid_report_test_and_eval_its_test_file(cli, tmp_path):
    rng = random.Random(0)
    lines = lambda n: "".join(" ".join(rng.choice("the a cat dog sat ran on mat".split()) for _ in range(rng.randint(3, 9))) + "\n" for _ in range(n))  # noqa: E731
    root = write_layout(tmp_path / "corpus", lines(400), lines(40) + "the okapi sat\n", lines(40) + "a zebra ran\n")
    result = cli("train", root, *TINY, "--level", "word", "--clean", "none", "--epochs", "2", "--out", tmp_path / "run")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["test"]["test_unk_tokens"] == 1  # 'zebra': not in train.txt
    scored = cli("eval", tmp_path / "run", root / "test.txt", "--json")
    assert scored.code == 0, scored.err
    result = json.loads(scored.out)
    test_tokens = len(text_tokens((root / "test.txt").read_text(), "word", "none"))
    assert result["tokens"] == test_tokens - 1 == report["test"]["test_tokens"] and result["unk_tokens"] == 1
    assert math.isclose(result["perplexity"], report["test"]["test_ppl"], rel_tol=1e-5)
    default = json.loads(cli("eval", tmp_path / "run", "--json").out)  # no DATA: the layout's test.txt
    assert default["source"] == str(root / "test.txt") and math.isclose(default["perplexity"], result["perplexity"], rel_tol=1e-9)


@pytest.mark.parametrize("case, needle", [
    ("no-train", "is a directory without train.txt: a corpus directory holds train.txt, valid.txt and test.txt"),
    ("empty-valid", "valid.txt is empty"),
    ("blank-test", "test.txt is empty (only whitespace)"),
])
def test_bad_layouts_get_one_line(cli, tmp_path, case, needle):
    root = write_layout(tmp_path / "c", "a b c a b c\n" * 50, "a b\n", "b c\n")
    if case == "no-train":
        (root / "train.txt").unlink()
    elif case == "empty-valid":
        (root / "valid.txt").write_bytes(b"")
    else:
        (root / "test.txt").write_bytes(b" \n")
    assert needle in one_error_line(cli("train", root, *TINY, "--level", "word", "--clean", "none"), 1)


# ---- adaptive softmax ----------------------------------------------------------------------------
def test_adaptive_cutoffs_follow_the_frequencies():
    counts = [0, 50, 30, 10, 5, 3, 1, 1]  # 100 tokens
    assert adaptive_cutoffs(counts) == [3, 5]  # 80% within ids [0, 3), 95% within [0, 5)
    assert adaptive_cutoffs([0, 5, 5]) == []  # too small to split


@pytest.mark.parametrize("tie", [False, True])
def test_adaptive_softmax_is_a_distribution_and_its_loss_is_its_log_probability(tie):
    torch.manual_seed(0)
    model = RNNLM(50, embed=8, hidden=8, layers=1, cell="lstm", tie_weights=tie, cutoffs=[10, 30]).eval()
    x, y = torch.randint(0, 50, (6, 3)), torch.randint(0, 50, (6, 3))
    log_p, _ = model(x)
    assert log_p.shape == (6, 3, 50)
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(6, 3))
    nll, _ = model(x, None, y)
    torch.testing.assert_close(nll, -log_p.gather(-1, y[..., None]).squeeze(-1))
    if tie:  # the head's shortlist rows are the embedding's: a gradient through the head reaches it
        nll.sum().backward()
        assert model.embedding.weight.grad[:10].abs().sum() > 0 and model.adaptive.head.cluster_weight.grad is not None
        assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in RNNLM(50, 8, 8, 1, "lstm", cutoffs=[10, 30]).parameters())


def test_adaptive_softmax_trains_and_samples_through_the_cli(cli, tmp_path):
    root = write_layout(tmp_path / "c", "".join(f"w{i % 97} w{(i * 7) % 89} w{i % 13}\n" for i in range(600)), "w1 w7 w1\n" * 5,
                        "w2 w14 w2\n" * 5)
    result = cli("train", root, *TINY, "--level", "word", "--clean", "none", "--softmax", "adaptive", "--embed", "32",
                 "--tie-weights", "--epochs", "3", "--lr", "0.01", "--out", tmp_path / "run")
    assert result.code == 0, result.err
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]  # the loss really goes down
    sample = cli("sample", "--checkpoint", tmp_path / "run", "--prefix", "w1", "--length", "20", "--seed", "0")
    assert sample.code == 0 and sample.out.startswith("w1"), sample.err
    small = one_error_line(cli("train", tmp_path / "c" / "valid.txt", *TINY, "--level", "word", "--softmax", "adaptive",
                               "--steps", "2", "--batch", "2", "--val-fraction", "0.3"), 2)
    assert "--softmax adaptive needs a vocabulary it can split by frequency" in small


@pytest.mark.skipif(not (SHARED / "warandpeace.train.txt").is_file(), reason="needs ../shared/corpora")
def test_war_and_peace_layout_counts_out_of_vocabulary_words(tmp_path):
    root = tmp_path / "wp"
    root.mkdir()
    for name in LAYOUT:
        (root / f"{name}.txt").symlink_to(SHARED / f"warandpeace.{name}.txt")
    data = load_corpus(str(root), "word", "none", 0)
    train_words = set((SHARED / "warandpeace.train.txt").read_text(encoding="utf-8").split())
    valid = (SHARED / "warandpeace.valid.txt").read_text(encoding="utf-8")
    assert len(data.vocab) == len(train_words) + 2  # + <unk>, <eos>
    assert int((data.part("valid") == 0).sum()) == sum(w not in train_words for w in valid.split())
    assert int((data.part("valid") == 1).sum()) == valid.count("\n") + (not valid.endswith("\n"))  # the last line too


# ---- <unk> for words seen once -------------------------------------------------------------------
def test_unk_rate_replaces_only_words_seen_once_and_keeps_inputs_consistent_with_targets(tmp_path):
    from seqtool.core.spec import spec_defaults
    from seqtool.lm.task import LanguageModelTask

    words = ["common"] * 300 + [f"once{i}" for i in range(300)]
    random.Random(1).shuffle(words)
    root = write_layout(tmp_path / "c", " ".join(words) + "\n", "common once1\n", "common once2\n")
    spec = spec_defaults("lm")
    spec.data.corpus, spec.data.level, spec.data.clean, spec.data.steps, spec.train.batch = str(root), "word", "none", 10, 4
    for rate, expected in ((0.0, 0.0), (0.5, 0.5), (1.0, 1.0)):
        spec.train.unk_rate = rate
        task = LanguageModelTask.from_spec(spec)
        once = torch.tensor([c == 1 for c in task.counts])
        batches = list(task.train_batches(0, torch.Generator().manual_seed(0)))
        clean = list(make_batches(task.train_ids, 4, 10, "sequential", torch.Generator().manual_seed(0)))
        hits = total = 0
        previous = None
        for (x, y), (x0, y0) in zip(batches, clean):
            changed = y != y0
            assert bool((y[changed] == 0).all()) and bool(once[y0[changed]].all())  # only words seen once, only to <unk>
            assert torch.equal(x[1:], y[:-1])  # an input is the target one step before, noised alike
            if previous is not None:
                assert torch.equal(x[0], previous)  # across batches too: the stream continues
            previous = y[-1]
            hits, total = hits + int(changed.sum()), total + int(once[y0].sum())
        assert abs(hits / total - expected) < 0.08, (rate, hits / total)


def test_unk_rate_needs_fixed_truncation(cli, tiny_text):
    line = one_error_line(cli("train", tiny_text, *TINY, "--unk-rate", "0.5", "--truncation", "full"), 2)
    assert "--unk-rate needs --truncation fixed (got full)" in line


@pytest.mark.skipif(not (SHARED / "warandpeace.train.txt").is_file(), reason="needs ../shared/corpora")
def test_the_word_recipe_trains_on_war_and_peace_and_eval_reproduces_its_test_score(cli, tmp_path):
    root = tmp_path / "wp"
    root.mkdir()
    for name in LAYOUT:
        (root / f"{name}.txt").symlink_to(SHARED / f"warandpeace.{name}.txt")
    result = cli("train", root, "--spec", ROOT / "specs" / "word-lstm.yaml", "--max-tokens", "14000", "--max-seconds", "0",
                 "--threads", "2", "--out", tmp_path / "run", "--quiet")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    test_file = (SHARED / "warandpeace.test.txt").read_text(encoding="utf-8")
    assert report["test"]["test_tokens"] == len(test_file.split()) + test_file.count("\n") + (not test_file.endswith("\n")) - 1
    assert report["test"]["test_unk_tokens"] > 0
    scored = json.loads(cli("eval", tmp_path / "run", root / "test.txt", "--json").out)
    assert math.isclose(scored["perplexity"], report["test"]["test_ppl"], rel_tol=1e-5) and scored["perplexity"] < 34625  # < uniform



@pytest.mark.parametrize("vocab", [7, 300])  # dense tables (trigrams counted, shorter n-grams derived), and sparse ones (300^3 codes)
@pytest.mark.parametrize("length", [1, 2, 3, 1000])
def test_ngram_counts_over_blocks_equal_counting_the_whole_sequence(vocab, length):
    from collections import Counter

    from seqtool.data.stats import ngram_frequencies, ngram_of

    ids = np.random.RandomState(length).randint(0, vocab, size=length).astype(np.uint16)
    tables = ngram_frequencies((ids[i : i + 37] for i in range(0, length, 37)), (1, 2, 3), vocab)
    for n in (1, 2, 3):
        expected = Counter(tuple(ids[i : i + n].tolist()) for i in range(length - n + 1))
        codes, counts = tables[n]
        assert {tuple(ngram_of(int(c), n, vocab)): int(k) for c, k in zip(codes, counts)} == expected
        assert list(counts) == sorted(counts, reverse=True)


def test_a_layout_preprocessed_into_a_store_keeps_its_parts(cli, tmp_path):
    root = write_layout(tmp_path / "c", "a b a c\n" * 60, "a zebra\n" * 3, "b c\n" * 3)
    store = tmp_path / "c.tokens"
    result = cli("preprocess", root, "--level", "word", "--clean", "none", "--out", store, "--json")
    assert result.code == 0, result.err
    stats = json.loads(result.out)
    assert stats["splits"] == {"train": {"tokens": 300, "unk_tokens": 0}, "valid": {"tokens": 9, "unk_tokens": 3},
                               "test": {"tokens": 9, "unk_tokens": 0}}
    direct, stored = load_corpus(str(root), "word", "none", 0), load_corpus(str(store), "char", "letters", 0)
    assert stored.splits == direct.splits and torch.equal(stored.ids, direct.ids) and stored.counts == direct.counts
    runs = [json.loads((cli("train", corpus, *TINY, "--level", "word", "--clean", "none", "--epochs", "1", "--out", tmp_path / name),
                        tmp_path / name / "report.json")[1].read_text())["test"] for name, corpus in (("a", root), ("b", store))]
    assert runs[0] == runs[1] and runs[0]["test_tokens"] == 8


def test_word_samples_stream_exactly_the_text_they_return_with_eos_as_line_ends(cli, tmp_path):
    from seqtool.core.restore import restore

    root = write_layout(tmp_path / "c", "a b\nc a b\nb\n" * 80, "a b\n", "c b\n")
    assert cli("train", root, *TINY, "--level", "word", "--clean", "none", "--epochs", "2", "--lr", "0.02", "--out", tmp_path / "run").code == 0
    r = restore(str(tmp_path / "run"), task="lm", device="cpu")
    for prefix in ("a b\n", "c a"):
        pieces: list[str] = []
        text = r.task.generate(r.model, prefix, 60, seed=0, on_text=pieces.append)[0]
        assert "".join(pieces) == text and text.startswith(prefix) and "\n" in text[len(prefix):] and EOS not in text
