"""seqtool export --format onnx: graphs checked against torch by onnxruntime, the same greedy text
and forecasts from the onnxruntime engine, and refusals that leave nothing behind."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from conftest import TINY

PANEL_FAST = ["--epochs", "1", "--ensemble", "3", "--hidden", "16", "--batch", "64", "--threads", "1", "--quiet"]


@pytest.fixture(params=["gru", "lstm"])
def lm_run(request, cli, tiny_text):
    result = cli("train", tiny_text, *TINY, "--epochs", "3", "--cell", request.param, "--layers", "2", "--out", "run")
    assert result.code == 0, result.err
    return "run"


def test_a_language_model_exports_and_onnxruntime_samples_the_same_greedy_text(cli, tmp_path, lm_run):
    result = cli("export", lm_run)
    assert result.code == 0, result.err
    written = json.loads(result.out)
    assert written["files"] == [str(tmp_path / "run" / "export" / "model.onnx"), str(tmp_path / "run" / "export" / "model.json")]
    assert written["max_abs_difference"]["model"] <= 1e-4
    sidecar = json.loads((tmp_path / "run" / "export" / "model.json").read_text())
    assert sidecar["task"] == "lm" and sidecar["task_state"]["level"] == "char"
    assert set("the quick brown fox") <= set(sidecar["task_state"]["vocab"])  # what a consumer needs to tokenize
    assert sorted(p.name for p in (tmp_path / "run" / "export").iterdir()) == ["model.json", "model.onnx"]
    for prefix in ("the quick", "lazy"):
        args = ["sample", "-c", lm_run, "--prefix", prefix, "--greedy", "--length", "60", "--num", "2", "--json"]
        torch_text = cli(*args)
        onnx_text = cli(*args, "--engine", "onnxruntime")
        assert onnx_text.code == 0, onnx_text.err
        assert onnx_text.out == torch_text.out


def test_a_panel_forecaster_exports_and_onnxruntime_forecasts_within_1e_4(cli, tmp_path):
    from test_panel import monthly_panel

    monthly_panel(tmp_path / "p.csv")
    assert cli("forecast", "p.csv", "--horizon", "6", "--level", "80", "--out", "run", *PANEL_FAST).code == 0
    result = cli("export", "run", "--out", "exported/forecaster.onnx")
    assert result.code == 0, result.err
    sidecar = json.loads((tmp_path / "exported" / "forecaster.json").read_text())
    assert sidecar["combination"] == json.loads((tmp_path / "run" / "combination.json").read_text())  # widths for consumers
    by_torch = list(csv.DictReader(io.StringIO(cli("forecast", "--checkpoint", "run", "--level", "80").out)))
    by_onnx = cli("forecast", "--checkpoint", "run", "--level", "80", "--engine", "onnxruntime", "--onnx", "exported/forecaster.onnx")
    assert by_onnx.code == 0, by_onnx.err
    rows = list(csv.DictReader(io.StringIO(by_onnx.out)))
    assert [(r["unique_id"], r["ds"]) for r in rows] == [(r["unique_id"], r["ds"]) for r in by_torch]
    for a, b in zip(rows, by_torch):
        for column in ("forecast", "lo-80", "hi-80"):
            assert float(a[column]) == pytest.approx(float(b[column]), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("model", ["mlp", "gru"])
def test_a_single_series_forecaster_exports_its_roll_out_and_onnxruntime_forecasts_within_1e_4(cli, tmp_path, model):
    assert cli("forecast", "airline-passengers", "--model", model, "--k", "1,6", "--epochs", "2", "--out", "air", "--quiet").code == 0
    result = cli("export", "air")
    assert result.code == 0, result.err
    args = ["forecast", "--checkpoint", "air", "--horizon", "6", "--level", "80"]
    by_torch = list(csv.DictReader(io.StringIO(cli(*args).out)))
    by_onnx = cli(*args, "--engine", "onnxruntime")
    assert by_onnx.code == 0, by_onnx.err
    rows = list(csv.DictReader(io.StringIO(by_onnx.out)))
    assert [r["time"] for r in rows] == [r["time"] for r in by_torch] and len(rows) == 6
    for a, b in zip(rows, by_torch):
        for column in ("forecast", "lo-80", "hi-80"):
            assert float(a[column]) == pytest.approx(float(b[column]), rel=1e-4, abs=1e-4)
    result = cli("forecast", "--checkpoint", "air", "--horizon", "7", "--engine", "onnxruntime")
    assert result.code == 1
    assert result.err == "seqtool: error: the exported graph forecasts 6 steps; this asks for 7 (export a run trained with --horizon 7)\n"


def test_refusals_are_one_line_and_leave_no_file(cli, tmp_path, tiny_text, monkeypatch):
    assert cli("train", tiny_text, *TINY, "--epochs", "1", "--out", "run").code == 0
    result = cli("export", "run", "--format", "tflite")
    assert result.code == 2 and result.err == "seqtool: error: --format 'tflite': the formats are onnx\n"
    (tmp_path / "empty").mkdir()
    result = cli("export", "empty")
    assert result.code == 1 and result.err.count("\n") == 1
    # parity is checked, not assumed: with a tolerance nothing can meet, the export is refused and nothing is left
    import seqtool.core.export as export

    tolerance = export.ATOL
    monkeypatch.setattr(export, "ATOL", -1.0)
    result = cli("export", "run", "--out", "x/model.onnx")
    assert result.code == 1 and "differs from torch's by" in result.err and result.err.endswith("nothing was written\n")
    assert list((tmp_path / "x").iterdir()) == []
    monkeypatch.setattr(export, "ATOL", tolerance)
    # a graph the exporter cannot lower: the part is named, the exporter's summary given, nothing written

    def cannot(*args, **kwargs):
        raise RuntimeError("\x1b[96mstep 3/3\x1b[0m failed\nNext steps: ...\n## Exception summary\n<class 'DispatchError'>: No ONNX function for aten.thing")

    monkeypatch.setattr(export.torch.onnx, "export", cannot)
    result = cli("export", "run", "--out", "y/model.onnx")
    assert result.err == "seqtool: error: the lm model's model graph cannot be exported to ONNX: <class 'DispatchError'>: No ONNX function for aten.thing\n"
    assert result.code == 1 and list((tmp_path / "y").iterdir()) == []
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    # the engine needs an export of the run's current best checkpoint
    result = cli("sample", "-c", "run", "--engine", "onnxruntime")
    assert result.code == 1 and result.err.startswith("seqtool: error: no ONNX export at ")
    assert cli("export", "run").code == 0
    assert cli("train", "--resume", "run", "--epochs", "3", "--quiet").code == 0
    result = cli("sample", "-c", "run", "--engine", "onnxruntime")
    assert result.code == 1 and result.err.endswith("export again\n")
    assert cli("sample", "-c", "run", "--engine", "tvm").err == "seqtool: error: --engine 'tvm': choose torch or onnxruntime\n"


PAIRS = "go .\tva !\nhi .\tsalut !\nrun !\tcours !\nwait .\tattends .\nhelp !\tà l'aide !\nstop !\tarrête !\nI won .\tj'ai gagné .\n"


@pytest.mark.parametrize("cell, attention, members", [("gru", "additive", 1), ("lstm", "none", 1), ("gru", "additive", 2)])
def test_a_translator_exports_encoder_and_decoder_and_onnxruntime_decodes_the_same(cli, tmp_path, cell, attention, members):
    """One graph pair per translator; --members 2 exports each member's pair, averaged as torch averages them."""
    (tmp_path / "pairs.tsv").write_text(PAIRS * 8)
    result = cli("train", "pairs.tsv", "--embed", "16", "--hidden", "16", "--layers", "2", "--cell", cell, "--attention", attention,
                 "--members", str(members), "--steps", "5", "--val-fraction", "0.3", "--epochs", "30", "--batch", "8", "--threads", "1",
                 "--max-seconds", "0", "--out", "run", "--quiet")
    assert result.code == 0, result.err
    weights = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert {key.split(".")[1] if key.startswith("members.") else None for key in weights} == ({"0", "1"} if members == 2 else {None})
    result = cli("export", "run", "--out", "t.onnx")
    assert result.code == 0, result.err
    parts = [f"{part}.{i}" for i in range(members) for part in ("encoder", "decoder")] if members > 1 else ["encoder", "decoder"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("t.")) == sorted([*(f"t.{part}.onnx" for part in parts), "t.json"])
    sentences = ["Go.", "Run!", "I won.", "Help!", "Wait, stop!"]
    for beam in ("1", "3"):
        args = ["translate", "-c", "run", "--beam", beam, "--nbest", beam, "--json", *sentences]
        by_torch = [json.loads(line) for line in cli(*args).out.splitlines()]
        by_onnx = cli(*args, "--engine", "onnxruntime", "--onnx", "t.onnx")
        assert by_onnx.code == 0, by_onnx.err
        by_onnx = [json.loads(line) for line in by_onnx.out.splitlines()]
        assert [[h["text"] for h in r["translations"]] for r in by_onnx] == [[h["text"] for h in r["translations"]] for r in by_torch]
        for a, b in zip(by_onnx, by_torch):
            assert [h["score"] for h in a["translations"]] == pytest.approx([h["score"] for h in b["translations"]], abs=1e-4)
    if members > 1:  # eval scores the ensemble; a resume cannot change its size; a sidecar that lost a member's graph is refused
        scored = cli("eval", "run", "--json")
        assert scored.code == 0, scored.err
        assert json.loads(scored.out)["decoding"] == "beam 5, length penalty 0.6" and 0 <= json.loads(scored.out)["bleu"] <= 100
        resumed = cli("train", "--resume", "run", "--members", "1", "--epochs", "31", "--quiet")
        assert (resumed.code, resumed.err) == (2, "seqtool: error: --resume continues a run as it was specified; these flags would change it: --members\n")
        sidecar = json.loads((tmp_path / "t.json").read_text())
        del sidecar["graphs"]["decoder.1"]
        (tmp_path / "u.json").write_text(json.dumps(sidecar))
        for name in ("encoder.0", "decoder.0", "encoder.1"):
            (tmp_path / f"u.{name}.onnx").write_bytes((tmp_path / f"t.{name}.onnx").read_bytes())
        result = cli("translate", "-c", "run", "--engine", "onnxruntime", "--onnx", "u.onnx", "Go.")
        assert (result.code, result.err) == (1, "seqtool: error: the ONNX export has no decoder.1 graph for this 2-member translator; export again\n")
    long = " ".join(["go"] * 12)
    result = cli("translate", "-c", "run", "--engine", "onnxruntime", "--onnx", "t.onnx", long)
    assert result.code == 1 and result.err == "seqtool: error: a sentence has 13 tokens; the exported encoder reads at most 10\n"
