"""Sequence classification and tagging: readers, metrics, the networks, and train -> eval -> predict
-> export through the CLI, with the bad inputs each path must refuse in one line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.label import data as D
from seqtool.label.metrics import classification_scores, spans, tagging_scores
from seqtool.label.model import CharEncoder, Ensemble, SequenceClassifier, SequenceTagger

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora"
FAST = ["--threads", "1", "--max-seconds", "0", "--quiet", "--embed", "16", "--hidden", "24", "--batch", "16"]


def one_error_line(result, code: int = 1) -> str:
    assert result.code == code, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqtool: error: "), result.err
    return lines[0]


# ---- data ------------------------------------------------------------------------------------------
def sentiment_lines(n: int, seed: int) -> list[str]:
    """Sentences whose label is said by one of its words (the rest is noise): learnable in seconds."""
    rng = random.Random(seed)
    noise = "the a film story acting plot was is and of it this".split()
    lines = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        word = rng.choice(["good", "great", "fine"] if label == "pos" else ["bad", "awful", "dull"])
        words = [rng.choice(noise) for _ in range(rng.randint(3, 9))]
        words.insert(rng.randrange(len(words) + 1), word)
        lines.append(" ".join(words) + "\t" + label)
    return lines


def write_classify_layout(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", 400, 0), ("valid", 80, 1), ("test", 80, 2)):
        (root / f"{name}.tsv").write_text("\n".join(sentiment_lines(n, seed)) + "\n", encoding="utf-8")
    return root


def tagged_sentences(n: int, seed: int) -> list[list[tuple[str, str]]]:
    """Sentences of names (B-PER I-PER), verbs and nouns: the tag follows from the word and its left neighbour."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        s = [(rng.choice(["anna", "bob", "carl"]), "B-PER")]
        if rng.random() < 0.5:
            s.append((rng.choice(["smith", "jones"]), "I-PER"))
        s.append((rng.choice(["sees", "likes", "meets"]), "O"))
        s.append((rng.choice(["dogs", "cats", "tea"]), "O"))
        sentences.append(s)
    return sentences


def conllu(sentences) -> str:
    blocks = []
    for k, s in enumerate(sentences):
        rows = [f"# sent_id = {k}"] + [f"{i}\t{w}\t{w}\t{t}\tX{t}\t_\t0\tdep\t_\t_" for i, (w, t) in enumerate(s, 1)]
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks) + "\n"


def write_tag_layout(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", 300, 0), ("valid", 60, 1), ("test", 60, 2)):
        (root / f"{name}.conllu").write_text(conllu(tagged_sentences(n, seed)), encoding="utf-8")
    return root


def test_tsv_labels_are_the_last_field_and_bad_lines_are_named(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("A film, with tabs\tinside\tpos\n\nDull.\tneg\n", encoding="utf-8")
    got = D.read_labelled(str(path))
    assert [(s.tokens, s.labels, s.line) for s in got] == [(["a", "film", ",", "with", "tabs", "inside"], ["pos"], 1),
                                                          (["dull", "."], ["neg"], 3)]
    path.write_text("good\tpos\nno label here\n", encoding="utf-8")
    with pytest.raises(SeqtoolError, match=r"d.tsv, line 2: no label; expected text<TAB>label"):
        D.read_labelled(str(path))
    path.write_text("good\tpos\n   \tneg\n", encoding="utf-8")
    with pytest.raises(SeqtoolError, match=r"line 2: empty text"):
        D.read_labelled(str(path))


def test_csv_columns_by_name_or_position(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('id,review,stars\n1,"Great, really",5\n2,Bad,1\n', encoding="utf-8")
    got = D.read_labelled(str(path), "review", "stars")
    assert [(s.tokens, s.labels) for s in got] == [(["great", ",", "really"], ["5"]), (["bad"], ["1"])]
    assert [s.labels for s in D.read_labelled(str(path), "2", "3")] == [["5"], ["1"]]
    with pytest.raises(UsageError, match="--label-column 'nope': .* has columns id, review, stars"):
        D.read_labelled(str(path), "review", "nope")


def test_conllu_skips_comments_ranges_and_empty_nodes_and_picks_the_tag_column(tmp_path):
    text = ("# text = Don't go.\n1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_\n1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_\n"
            "2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_\n2.1\tx\tx\tX\tXX\t_\t_\t_\t_\t_\n3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_\n"
            "4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_\n\n1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_\n")
    path = tmp_path / "d.conllu"
    path.write_text(text, encoding="utf-8")
    got = D.read_tagged(str(path))
    assert [(s.tokens, s.labels) for s in got] == [(["Do", "n't", "go", "."], ["AUX", "PART", "VERB", "PUNCT"]), (["Yes"], ["INTJ"])]
    assert [s.labels for s in D.read_tagged(str(path), "xpos")] == [["VBP", "RB", "VB", "."], ["UH"]]
    two = tmp_path / "d.conll"
    two.write_text("EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn I-PER\n", encoding="utf-8")
    assert [s.labels for s in D.read_tagged(str(two))] == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    two.write_text("EU B-ORG\nrejects O\nalone\n", encoding="utf-8")
    with pytest.raises(SeqtoolError, match=r"d.conll, line 3: expected a token and a tag, found 1 column\(s\)"):
        D.read_tagged(str(two))
    path.write_text(text.replace("3\tgo\tgo\tVERB", "3\tgo\tVERB"), encoding="utf-8")
    with pytest.raises(SeqtoolError, match=r"d.conllu, line 6: 9 tab-separated columns; CoNLL-U has 10"):
        D.read_tagged(str(path))
    path.write_text("# only comments\n\n", encoding="utf-8")
    with pytest.raises(SeqtoolError, match="no tagged sentences found"):
        D.read_tagged(str(path))


# ---- metrics ----------------------------------------------------------------------------------------
def test_classification_scores_by_hand():
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "a", "a"]
    s = classification_scores(gold, pred, ["a", "b"])
    assert s["accuracy"] == pytest.approx(3 / 6)
    assert s["per_class"]["a"] == pytest.approx({"precision": 2 / 4, "recall": 2 / 3, "f1": 2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3), "support": 3})
    assert s["per_class"]["b"] == pytest.approx({"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "support": 2})
    assert s["macro_f1"] == pytest.approx((s["per_class"]["a"]["f1"] + 0.5) / 2)
    assert s["unseen_labels"] == {"c": 1}  # counted as wrong, and named
    assert s["confusion"] == {"gold": ["a", "b", "c"], "predicted": ["a", "b"], "matrix": [[2, 1], [1, 1], [1, 0]]}


def test_spans_as_seqeval_finds_them():
    assert spans(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 1), ("LOC", 3, 3)}
    assert spans(["I-PER", "I-PER", "B-PER", "I-LOC"]) == {("PER", 0, 1), ("PER", 2, 2), ("LOC", 3, 3)}  # I- starts a chunk; a type change too
    assert spans(["S-X", "B-Y", "E-Y", "O"]) == {("X", 0, 0), ("Y", 1, 2)}
    s = tagging_scores([["B-PER", "I-PER", "O"], ["B-LOC"]], [["B-PER", "O", "O"], ["B-LOC"]], [[True, False, True], [False]],
                       ["O", "B-PER", "I-PER", "B-LOC"])
    assert s["accuracy"] == pytest.approx(3 / 4) and s["unseen_accuracy"] == pytest.approx(1 / 2)
    assert (s["span_precision"], s["span_recall"], s["span_f1"]) == pytest.approx((1 / 2, 1 / 2, 1 / 2))


# ---- networks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("pool", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_padding_never_changes_a_sequence_label_and_masked_equals_packed(pool, cell):
    torch.manual_seed(0)
    model = SequenceClassifier(20, 3, 8, 6, 2, cell, 0.0, True, pool, chars=10, char_embed=5).eval()
    ids, chars = torch.randint(2, 20, (1, 5)), torch.randint(2, 10, (1, 5, 4))
    alone = model(ids, torch.tensor([5]), chars)
    padded = model(torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], 1), torch.tensor([5]), torch.cat([chars, torch.zeros(1, 3, 4, dtype=torch.long)], 1))
    assert alone.shape == (1, 3) and torch.allclose(alone, padded, atol=1e-5)
    batch = torch.randint(2, 20, (4, 7)) * (torch.arange(7) < torch.tensor([[7], [3], [5], [1]]))
    lengths, letters = torch.tensor([7, 3, 5, 1]), torch.randint(2, 10, (4, 7, 3))
    packed = model(batch, lengths, letters)
    model.masked = True
    assert torch.allclose(model(batch, lengths, letters), packed, atol=1e-5)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_lstm_character_encoding_ignores_padding_and_masked_equals_packed(cell):
    torch.manual_seed(0)
    model = SequenceTagger(20, 4, 8, 6, 1, cell, 0.0, True, chars=10, char_embed=6, char_encoder="lstm").eval()
    assert model.chars.width == 6 and model.rnn.input_size == 8 + 6
    ids, chars = torch.randint(2, 20, (1, 3)), torch.randint(2, 10, (1, 3, 4)) * (torch.arange(4) < torch.tensor([[[4], [2], [1]]]))
    alone = model(ids, torch.tensor([3]), chars)
    wider = torch.nn.functional.pad(chars, (0, 3, 0, 2))  # more letter slots and two padding words
    padded = model(torch.nn.functional.pad(ids, (0, 2)), torch.tensor([3]), wider)
    assert torch.allclose(alone, padded[:, :3], atol=1e-5)
    assert torch.equal(model.chars(wider)[0, 3:], torch.zeros(2, 6))  # a padding word's encoding is zero
    model.masked = True
    assert torch.allclose(model(torch.nn.functional.pad(ids, (0, 2)), torch.tensor([3]), wider), padded, atol=1e-5)
    with pytest.raises(ValueError, match="unknown character encoder"):
        CharEncoder(10, 6, kind="gru")


def test_an_ensemble_answers_with_its_members_mean_probability():
    torch.manual_seed(0)
    members = [SequenceClassifier(20, 3, 8, 6, 1, "gru", 0.0, True, "mean") for _ in range(3)]
    ensemble = Ensemble(members).eval()
    ids, lengths = torch.randint(2, 20, (4, 5)), torch.tensor([5, 4, 2, 1])
    each = ensemble(ids, lengths, per_member=True)
    assert each.shape == (3, 4, 3)
    for k, member in enumerate(members):
        assert torch.allclose(each[k], member(ids, lengths), atol=1e-6)
    mean = torch.stack([member(ids, lengths).softmax(-1) for member in members]).mean(0)
    assert torch.allclose(ensemble(ids, lengths).softmax(-1), mean, atol=1e-6)
    assert not torch.allclose(each[0], each[1])  # initialised apart
    ensemble.masked = True
    assert all(member.masked for member in members)
    assert torch.allclose(ensemble(ids, lengths).softmax(-1), mean, atol=1e-5)


def test_adversarial_training_fits_the_loss_at_the_most_harmful_nearby_encodings(tmp_path):
    """--adversarial eps: what training fits is the batch's loss plus its loss with every sequence's
    token encodings moved by exactly eps along the loss's gradient (so the second is the larger);
    nothing of the perturbation stays in the model afterwards; eps 0 fits the loss alone."""
    from seqtool.core.spec import resolve_spec
    from seqtool.label.task import ClassifyTask

    root = write_classify_layout(tmp_path / "data")
    eps = 0.5
    spec = resolve_spec(None, str(root), {"task": "classify", "label.adversarial": eps, "model.dropout": 0.0, "train.unk_rate": 0.0,
                                          "model.embed": 8, "model.hidden": 6, "model.members": 2})
    task = ClassifyTask.from_spec(spec)
    torch.manual_seed(0)
    model = task.build_model()
    batch = task.batch_of(task.parts["train"][:5])
    clean, fitted, count = task.losses(model, batch, torch.device("cpu"))
    assert count == 5
    assert all(member.inputs.delta is None and member.inputs.kept is None for member in model.members)
    assert torch.allclose(clean, task.fit_loss(task.member_logits(model, batch, "cpu"), batch["y"], "cpu")[0])
    # the same perturbation by hand: the gradient of the clean loss at the encodings, scaled to norm eps per sequence
    encodings = [member.embed(batch["ids"]).detach().requires_grad_() for member in model.members]
    hooks = [member.embed.register_forward_hook(lambda module, inputs, out, x=x: x) for member, x in zip(model.members, encodings)]
    grads = torch.autograd.grad(task.fit_loss(task.member_logits(model, batch, "cpu"), batch["y"], "cpu")[0], encodings)
    moves = [eps * g / g.flatten(1).norm(dim=1).view(-1, 1, 1) for g in grads]
    assert torch.allclose(moves[0].flatten(1).norm(dim=1), torch.full((5,), eps))
    for hook in hooks:
        hook.remove()
    hooks = [member.embed.register_forward_hook(lambda module, inputs, out, moved=(x + move).detach(): moved)
             for member, x, move in zip(model.members, encodings, moves)]
    adversarial = task.fit_loss(task.member_logits(model, batch, "cpu"), batch["y"], "cpu")[0]
    assert torch.allclose(fitted, clean + adversarial, atol=1e-6)
    assert adversarial > clean  # uphill: the first-order step raises the loss
    spec.label.adversarial = 0.0
    for hook in hooks:
        hook.remove()
    clean_again, fitted_again, _ = task.losses(model, batch, torch.device("cpu"))
    assert torch.allclose(clean_again, clean) and torch.equal(clean_again, fitted_again)


def test_a_tagger_gives_a_label_per_token():
    torch.manual_seed(0)
    model = SequenceTagger(20, 4, 8, 6, 1, "gru", 0.0, True).eval()
    out = model(torch.randint(2, 20, (3, 6)), torch.tensor([6, 2, 4]))
    assert out.shape == (3, 6, 4)


# ---- end to end -------------------------------------------------------------------------------------
def test_classify_train_eval_predict_export(cli, tmp_path):
    root = write_classify_layout(tmp_path / "data")
    result = cli("train", "--task", "classify", root, *FAST, "--epochs", "8", "--lr", "0.01", "--out", "run")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["best"]["val_accuracy"] > 0.95 and report["test"]["test_examples"] == 80
    scored = cli("eval", "run", "--json", "--out", "ev")
    assert scored.code == 0, scored.err
    result = json.loads(scored.out)
    assert result["accuracy"] == pytest.approx(report["test"]["test_accuracy"])  # the run's test split, as the report scored it
    assert result["confusion"]["gold"] == ["pos", "neg"] or result["confusion"]["gold"] == ["neg", "pos"]
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 1000 and json.loads((tmp_path / "ev" / "eval.json").read_text()) == result
    table = cli("eval", "run", root / "test.tsv").out
    assert f"accuracy {result['accuracy']:.4f}" in table and "confusion (rows: gold, columns: predicted)" in table
    lines = ["what a great film", "", "the plot was dull and bad"]
    predicted = cli("predict", "--checkpoint", "run", stdin=("\n".join(lines) + "\n").encode())
    assert predicted.code == 0, predicted.err
    assert predicted.out.split("\n") == ["pos", "", "neg", ""]  # one line out per line in
    as_json = [json.loads(line) for line in cli("predict", "-c", "run", "--json", "--top", "1", "great acting").out.splitlines()]
    assert as_json[0]["label"] == "pos" and list(as_json[0]["probabilities"]) == ["pos"] and 0.5 < as_json[0]["probabilities"]["pos"] <= 1
    exported = cli("export", "run")
    assert exported.code == 0, exported.err
    onnx = cli("predict", "-c", "run", "--engine", "onnxruntime", stdin=("\n".join(lines) + "\n").encode())
    assert onnx.out == predicted.out


def test_tag_train_eval_predict_export(cli, tmp_path):
    root = write_tag_layout(tmp_path / "data")
    result = cli("train", root, *FAST, "--epochs", "10", "--lr", "0.01", "--char-embed", "8", "--out", "run")  # .conllu: tagging without --task
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["task"] == "tag" and report["test"]["test_accuracy"] > 0.95 and report["test"]["test_span_f1"] > 0.9
    state = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert {key.split(".")[1] for key in state} == {"0", "1"}  # tagging trains two members by default
    scored = json.loads(cli("eval", "run", root / "test.conllu", "--json").out)
    assert scored["accuracy"] == pytest.approx(report["test"]["test_accuracy"]) and scored["tokens"] == report["test"]["test_tokens"]
    out = cli("predict", "-c", "run", "anna smith likes tea", "zoe meets cats")
    assert out.code == 0, out.err
    first, second = out.out.splitlines()
    assert first == "anna/B-PER smith/I-PER likes/O tea/O"
    assert second.split()[1:] == ["meets/O", "cats/O"]  # an unseen name: its tag comes from its place and letters
    conll = cli("predict", "-c", "run", "--format", "conll", "bob sees dogs").out
    assert conll == "bob\tB-PER\nsees\tO\ndogs\tO\n\n"
    assert cli("export", "run").code == 0
    onnx = cli("predict", "-c", "run", "--engine", "onnxruntime", "anna smith likes tea", "zoe meets cats")
    assert onnx.out == out.out


def test_ensembles_and_the_lstm_character_encoding_through_the_cli(cli, tmp_path):
    """--members and --char-encoder: trained, saved, restored, exported with parity and resumed."""
    root = write_classify_layout(tmp_path / "cls")
    result = cli("train", "--task", "classify", root, *FAST, "--epochs", "6", "--lr", "0.01", "--members", "3", "--out", "ens")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "ens" / "report.json").read_text())
    assert report["best"]["val_accuracy"] > 0.95
    state = torch.load(tmp_path / "ens" / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert {key.split(".")[1] for key in state} == {"0", "1", "2"}  # three members' weights in one checkpoint
    lines = "what a great film\nthe plot was dull and bad\n"
    predicted = cli("predict", "-c", "ens", "--json", stdin=lines.encode())
    assert [json.loads(line)["label"] for line in predicted.out.splitlines()] == ["pos", "neg"]
    assert cli("export", "ens").code == 0
    assert cli("predict", "-c", "ens", "--json", "--engine", "onnxruntime", stdin=lines.encode()).out == predicted.out
    resumed = cli("train", "--resume", "ens", "--epochs", "7", "--quiet")
    assert resumed.code == 0, resumed.err
    assert json.loads((tmp_path / "ens" / "report.json").read_text())["epochs"] == 7
    tags = write_tag_layout(tmp_path / "tags")
    result = cli("train", tags, *FAST, "--epochs", "10", "--lr", "0.01", "--char-embed", "8", "--char-encoder", "lstm", "--members", "2",
                 "--out", "tagger")
    assert result.code == 0, result.err
    out = cli("predict", "-c", "tagger", "anna smith likes tea")
    assert out.out == "anna/B-PER smith/I-PER likes/O tea/O\n"
    assert cli("export", "tagger").code == 0
    assert cli("predict", "-c", "tagger", "--engine", "onnxruntime", "anna smith likes tea").out == out.out
    refused = one_error_line(cli("train", "timemachine", "--members", "2", *FAST, "--out", "lm"), 2)
    assert "--members" in refused
    refused = one_error_line(cli("train", "timemachine", "--adversarial", "1", *FAST, "--out", "lm"), 2)
    assert "--adversarial" in refused


def test_a_tagger_saved_before_the_lstm_character_encoding_still_loads(cli, tmp_path):
    """Runs saved before --char-encoder existed used the convolution; today's tagging default is the LSTM."""
    from seqtool.core.run import load_checkpoint, save_checkpoint

    root = write_tag_layout(tmp_path / "tags")
    assert cli("train", root, *FAST, "--epochs", "6", "--lr", "0.01", "--char-embed", "8", "--char-encoder", "conv", "--out", "old").code == 0
    before = cli("predict", "-c", "old", "anna smith likes tea").out
    for which in ("best", "last"):
        path = tmp_path / "old" / "checkpoints" / f"{which}.pt"
        payload = load_checkpoint(path)
        del payload["task_state"]["char_encoder"], payload["spec"]["label"]["char_encoder"]  # as the older format saved it
        save_checkpoint(path, payload)
    after = cli("predict", "-c", "old", "anna smith likes tea")
    assert after.code == 0, after.err
    assert after.out == before


def test_a_classifier_on_subword_pieces_learns_restores_and_exports(cli, tmp_path):
    """--level unigram: pieces learnt on the training part only, kept inside the checkpoint, used by predict and the export."""
    root = write_classify_layout(tmp_path / "cls")
    (root / "valid.tsv").write_text("\n".join(sentiment_lines(80, 1) + ["zebra quagga xylophone\tpos"]) + "\n", encoding="utf-8")
    result = cli("train", "--task", "classify", root, *FAST, "--epochs", "8", "--lr", "0.01", "--level", "unigram", "--vocab-size", "40",
                 "--out", "pieces")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "pieces" / "report.json").read_text())
    assert report["best"]["val_accuracy"] > 0.9
    payload = torch.load(tmp_path / "pieces" / "checkpoints" / "best.pt", weights_only=True)
    from seqtool.data.subword import Subwords

    subwords = Subwords.from_state(payload["task_state"]["subwords"])
    assert "z" not in "".join(subwords.vocabulary())  # learnt on train alone: the valid-only letters are not pieces
    words = payload["task_state"]["words"]
    assert any(w.startswith("▁") for w in words) and len(words) <= 40 + 2
    lines = "what a great film\nthe plot was dull and bad\n"
    predicted = cli("predict", "-c", "pieces", "--json", stdin=lines.encode())
    assert [json.loads(line)["label"] for line in predicted.out.splitlines()] == ["pos", "neg"]
    assert cli("export", "pieces").code == 0
    assert cli("predict", "-c", "pieces", "--json", "--engine", "onnxruntime", stdin=lines.encode()).out == predicted.out
    refused = cli("train", "--resume", "pieces", "--level", "word", "--epochs", "9")
    assert refused.code != 0 and "level" in refused.err
    too_big = one_error_line(cli("train", "--task", "classify", root, *FAST, "--level", "bpe", "--vocab-size", "5000", "--out", "big"))
    assert "--vocab-size 5000 does not fit the training part" in too_big and not (tmp_path / "big").exists()
    assert "classification reads word or subword" in one_error_line(
        cli("train", "--task", "classify", root, *FAST, "--level", "char", "--out", "chars"), 2)


def test_word_pieces_are_the_sentence_pieces_and_each_word_is_tagged_at_its_first_real_piece():
    from seqtool.data.subword import Subwords
    from seqtool.label.task import WordPieces

    text = ["anna smith likes tea", "bob jones meets cats ( really )", "carl sees dogs"] * 30
    subwords = Subwords.learn(text, "bpe", 30)
    split = WordPieces(subwords)
    for sentence in text[:3] + ["zoe sees ( unseen ) words"]:
        tokens = sentence.split()
        pieces, starts = split.of_words(tokens)
        assert pieces == subwords.pieces(sentence)  # pieces never cross a space
        assert len(starts) == len(tokens)
        offset = 0
        for word, start in zip(tokens, starts):
            own, first = split.of_word(word)
            assert pieces[offset : offset + len(own)] == own and start == offset + first and pieces[start] != "▁"
            assert "".join(own).replace("▁", "") == word
            offset += len(own)
        assert offset == len(pieces)
    assert split.of_word("smith") == (subwords.pieces("smith"), 0) and subwords.pieces("smith")[0] == "▁s"
    bare = next(w for w in ("(", ")", "zoe", "q") if subwords.pieces(w)[0] == "▁")  # a word whose first piece is the marker alone
    assert split.of_word(bare)[1] == 1


def test_a_tagger_on_subword_pieces_tags_every_word_once(cli, tmp_path):
    """--level bpe for tagging: each word's first piece carries its tag, scored and printed per word; the
    pieces and the training words (for accuracy on unseen words) live in the checkpoint."""
    root = write_tag_layout(tmp_path / "data")
    result = cli("train", root, *FAST, "--epochs", "10", "--lr", "0.01", "--char-embed", "8", "--level", "bpe", "--vocab-size", "30",
                 "--out", "pieces")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "pieces" / "report.json").read_text())
    assert report["test"]["test_accuracy"] > 0.95 and report["test"]["test_span_f1"] > 0.9
    payload = torch.load(tmp_path / "pieces" / "checkpoints" / "best.pt", weights_only=True)
    from seqtool.data.subword import Subwords

    subwords = Subwords.from_state(payload["task_state"]["subwords"])
    assert any(len(subwords.pieces(w)) > 1 for w in ("smith", "jones", "likes"))  # words really are split
    assert "anna" in payload["task_state"]["seen_words"] and len(payload["task_state"]["words"]) <= 30 + 2
    scored = json.loads(cli("eval", "pieces", root / "test.conllu", "--json").out)
    assert scored["accuracy"] == pytest.approx(report["test"]["test_accuracy"]) and scored["tokens"] == report["test"]["test_tokens"]
    (tmp_path / "unseen.conllu").write_text(conllu([[("zoe", "B-PER"), ("likes", "O"), ("tea", "O")]]), encoding="utf-8")
    unseen = json.loads(cli("eval", "pieces", "unseen.conllu", "--json").out)
    assert unseen["tokens"] == 3 and unseen["unseen_tokens"] == 1  # zoe: a word training never saw, though its pieces exist
    out = cli("predict", "-c", "pieces", "anna smith likes tea", "zoe meets cats")
    assert out.code == 0, out.err
    first, second = out.out.splitlines()
    assert first == "anna/B-PER smith/I-PER likes/O tea/O"
    assert [t.split("/")[0] for t in second.split()] == ["zoe", "meets", "cats"]
    assert cli("export", "pieces").code == 0
    assert cli("predict", "-c", "pieces", "--engine", "onnxruntime", "anna smith likes tea", "zoe meets cats").out == out.out
    refused = cli("train", "--resume", "pieces", "--level", "word", "--epochs", "11")
    assert refused.code != 0 and "level" in refused.err
    assert "tagging reads word or subword" in one_error_line(cli("train", root, *FAST, "--level", "char", "--out", "chars"), 2)
    too_big = one_error_line(cli("train", root, *FAST, "--level", "bpe", "--vocab-size", "5000", "--out", "big"))
    assert "--vocab-size 5000 does not fit the training part" in too_big and not (tmp_path / "big").exists()


def test_classify_and_tag_learn_the_shared_corpora(cli, tmp_path):
    """SST-2 and UD English through the catalog: a short run beats always answering the most frequent label."""
    from collections import Counter

    sst = tmp_path / "sst"
    sst.mkdir()
    for part, name in (("train", "sst2-train.tsv"), ("valid", "sst2-dev.tsv"), ("test", "sst2-dev.tsv")):
        (sst / f"{part}.tsv").symlink_to(SHARED / name)
    # --adversarial 0: adversarial training takes twice as long per step and starts slower; what this
    # checks is that the pipeline learns the real corpus in a short budget
    result = cli("train", "--task", "classify", sst, "--threads", "1", "--max-seconds", "25", "--adversarial", "0", "--out", "sst-run",
                 "--quiet")
    assert result.code == 0, result.err
    dev = D.read_labelled(str(SHARED / "sst2-dev.tsv"))
    majority = Counter(s.labels[0] for s in dev).most_common(1)[0][1] / len(dev)
    assert json.loads((tmp_path / "sst-run" / "report.json").read_text())["test"]["test_accuracy"] > majority + 0.1
    result = cli("train", "ud-english-train", "--threads", "1", "--max-seconds", "25", "--out", "ud", "--quiet", "--val-fraction", "0.1")
    assert result.code == 0, result.err
    scored = json.loads(cli("eval", "ud", "ud-english-valid", "--json").out)
    train = D.read_tagged(str(SHARED / "ud-english-train.conllu"))
    best = {w: c.most_common(1)[0][0] for w, c in _tag_counts(train).items()}
    valid = D.read_tagged(str(SHARED / "ud-english-valid.conllu"))
    pairs = [(w, t) for s in valid for w, t in zip(s.tokens, s.labels)]
    baseline = sum(best.get(w) == t for w, t in pairs) / len(pairs)  # most frequent tag per word (none for unseen words)
    assert scored["tokens"] == len(pairs) and scored["accuracy"] > baseline


def _tag_counts(sentences):
    from collections import Counter, defaultdict

    counts = defaultdict(Counter)
    for s in sentences:
        for w, t in zip(s.tokens, s.labels):
            counts[w][t] += 1
    return counts


def test_bad_labelled_input_is_one_line_and_nothing_is_written(cli, tmp_path):
    (tmp_path / "one.tsv").write_text("good\tpos\nfine\tpos\n" * 20, encoding="utf-8")
    assert "every training example has the label 'pos'" in one_error_line(cli("train", "--task", "classify", "one.tsv", *FAST, "--out", "r1"))
    (tmp_path / "nolabel.tsv").write_text("good\tpos\nbad\tneg\njust text\n", encoding="utf-8")
    assert one_error_line(cli("train", "--task", "classify", "nolabel.tsv", *FAST, "--out", "r2")).endswith(
        "nolabel.tsv, line 3: no label; expected text<TAB>label")
    (tmp_path / "bad.conllu").write_text(conllu(tagged_sentences(3, 0)).replace("\tdep\t_\t_\n", "\tdep\t_\n", 1), encoding="utf-8")
    assert one_error_line(cli("train", "--task", "tag", "bad.conllu", *FAST, "--out", "r3")).endswith(
        "bad.conllu, line 2: 9 tab-separated columns; CoNLL-U has 10")
    (tmp_path / "empty.conllu").write_text("# nothing\n", encoding="utf-8")
    assert "no tagged sentences found" in one_error_line(cli("train", "empty.conllu", *FAST, "--out", "r4"))
    assert not any((tmp_path / r).exists() for r in ("r1", "r2", "r3", "r4"))
    assert "--pool does not apply to task lm" in one_error_line(cli("train", "--task", "lm", "one.tsv", "--pool", "mean", "--dry-run"), 2)
    assert "--pool does not apply to task tag" in one_error_line(cli("train", "--task", "tag", "one.tsv", "--pool", "mean"), 2)


def test_predict_is_for_labelling_runs(cli, tmp_path, tiny_text):
    from conftest import TINY

    assert cli("train", tiny_text, *TINY, "--epochs", "1", "--out", "lm").code == 0
    assert one_error_line(cli("predict", "-c", "lm", "some text"), 2) == \
        "seqtool: error: seqtool predict is for classification and tagging runs; this is a lm run"


def test_long_sequences_are_cut_to_max_len_and_counted(cli, tmp_path):
    root = write_classify_layout(tmp_path / "data")
    result = cli("train", "--task", "classify", root, *FAST, "--epochs", "1", "--max-len", "4", "--out", "run")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    train = D.read_labelled(str(root / "train.tsv"))
    assert report["truncated"]["train"] == sum(len(s.tokens) > 4 for s in train) > 0 and report["max_len"] == 4
    assert "cut to --max-len 4" in (tmp_path / "run" / "report.md").read_text()


def test_csv_stdin_resume_and_bad_predict_flags_through_the_cli(cli, tmp_path):
    rows = [line.split("\t") for line in sentiment_lines(200, 3)]
    (tmp_path / "r.csv").write_text("id,review,stars\n" + "".join(f'{i},"{t}",{y}\n' for i, (t, y) in enumerate(rows)), encoding="utf-8")
    result = cli("train", "--task", "classify", "r.csv", "--text-column", "review", "--label-column", "stars", *FAST,
                 "--epochs", "2", "--out", "csv")
    assert result.code == 0, result.err
    assert sorted(json.loads((tmp_path / "csv" / "report.json").read_text())["test"]) == ["epoch", "test_accuracy", "test_examples",
                                                                                          "test_macro_f1"]
    resumed = cli("train", "--resume", "csv", "--epochs", "4", "--quiet")  # a classify run continues from its last checkpoint
    assert resumed.code == 0, resumed.err
    assert json.loads((tmp_path / "csv" / "report.json").read_text())["epochs"] == 4
    piped = cli("train", "--task", "classify", "-", *FAST, "--epochs", "1", "--out", "piped", stdin=("\n".join(sentiment_lines(120, 4)) + "\n").encode())
    assert piped.code == 0, piped.err
    assert "pass the labelled data to score as DATA" in one_error_line(cli("eval", "piped"))
    assert one_error_line(cli("predict", "-c", "csv", "--format", "xml", "good"), 2) == "seqtool: error: --format 'xml': choose slash or conll"
    assert one_error_line(cli("predict", "-c", "csv", "--top", "0", "good"), 2) == "seqtool: error: --top must be >= 1"
