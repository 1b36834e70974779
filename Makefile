# seqtool: `make demo` runs the main job end to end, `make test` runs the tests.
# Both create or refresh the virtualenv first. Override TORCH_VERSION or PYTHON if you need to.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
PY := $(VENV)/bin/python
SEQTOOL := $(VENV)/bin/seqtool
STAMP := $(VENV)/.installed-$(TORCH_VERSION)
BUILD := build

.PHONY: bench-word venv demo test bench stress lm forecast m4 translate label clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo    train a small GRU on The Time Machine (~1 min), sample from it, report perplexity"
	@echo "make test    run the test suite"
	@echo "make lm      the language-model workflow as file targets (preprocess -> train -> sample -> eval)"
	@echo "make forecast  forecast the synthetic sine (GRU) and airline-passengers (defaults), then 12 months past 1960 with intervals (~1 min)"
	@echo "make m4      one global model for the 359 M4 weekly series (~2 min), scored on the M4 test file as the competition does"
	@echo "make translate  train the default English->French translator on fra-eng, translate, score BLEU"
	@echo "make label   classify SST-2 sentences and tag UD English parts of speech (defaults, ~6 min), score, predict"
	@echo "make bench   benchmarks (prints numbers; takes several minutes)"
	@echo "make stress  bad inputs, SIGKILLs and Ctrl-Cs in bulk; prints how many were tried and held (a few minutes)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(SEQTOOL) train timemachine --spec specs/timemachine-gru.yaml --max-seconds 60 --out $(BUILD)/demo --overwrite
	@echo "--- samples for the prefix 'time traveller':"
	$(SEQTOOL) sample --checkpoint $(BUILD)/demo --prefix "time traveller" --length 160 --num 3 --temperature 0.7 --seed 1
	@echo "--- test-split perplexity (the checkpoint was chosen on the validation split):"
	$(SEQTOOL) eval $(BUILD)/demo

# The language-model workflow as real file targets: Make re-runs only what changed.
$(BUILD)/timemachine.tokens: $(STAMP)
	@mkdir -p $(BUILD)
	$(SEQTOOL) preprocess timemachine --level char --clean letters --out $@ --plot $(BUILD)/timemachine-zipf.png

$(BUILD)/lm/report.json: $(BUILD)/timemachine.tokens specs/timemachine-gru.yaml
	$(SEQTOOL) train $< --spec specs/timemachine-gru.yaml --out $(BUILD)/lm --overwrite --quiet

$(BUILD)/lm-samples.txt: $(BUILD)/lm/report.json
	$(SEQTOOL) sample --checkpoint $(BUILD)/lm --prefix "time traveller" --num 5 --length 200 --seed 0 > $@

$(BUILD)/lm-eval.json: $(BUILD)/lm/report.json
	$(SEQTOOL) eval $(BUILD)/lm --json > $@

lm: $(BUILD)/lm-samples.txt $(BUILD)/lm-eval.json
	@cat $(BUILD)/lm-samples.txt $(BUILD)/lm-eval.json

forecast: $(STAMP)
	@mkdir -p $(BUILD)
	$(SEQTOOL) forecast --synthetic sine --model gru --out $(BUILD)/forecast-sine --overwrite --quiet
	$(SEQTOOL) forecast airline-passengers --season 12 --n-train 120 --k 1,12 --out $(BUILD)/forecast-airline --overwrite --quiet
	$(SEQTOOL) forecast --checkpoint $(BUILD)/forecast-airline airline-passengers --horizon 12 --level 80,95 > $(BUILD)/airline-next12.csv
	@cat $(BUILD)/airline-next12.csv

# Many series: one global model for M4 Weekly, then the competition's scores (OWA against Naive2).
m4: $(STAMP)
	@mkdir -p $(BUILD)
	$(SEQTOOL) forecast m4-weekly-train --wide --horizon 13 --out $(BUILD)/m4-weekly --overwrite --quiet > $(BUILD)/m4-weekly-forecasts.csv
	$(SEQTOOL) eval $(BUILD)/m4-weekly --test m4-weekly-test

# Translation: train the default spec once, then translate the classic examples and score the held-out split.
$(BUILD)/translate/report.json: $(STAMP) specs/fra-eng.yaml
	$(SEQTOOL) train --spec specs/fra-eng.yaml --out $(BUILD)/translate --overwrite --quiet

translate: $(BUILD)/translate/report.json
	$(SEQTOOL) translate --checkpoint $(BUILD)/translate "Go." "I lost." "He's calm." "I'm home."
	$(SEQTOOL) eval $(BUILD)/translate --out $(BUILD)/translate-eval

# Classification and tagging on the shared data: train/valid(/test) layouts of catalog files, then eval and predict.
label: $(STAMP)
	$(SEQTOOL) train --task classify sst2-train --val-fraction 0.1 --out $(BUILD)/classify --overwrite --quiet
	$(SEQTOOL) eval $(BUILD)/classify sst2-dev
	echo "a gripping, funny and moving film" | $(SEQTOOL) predict --checkpoint $(BUILD)/classify --json
	$(SEQTOOL) train ud-english-train --val-fraction 0.05 --out $(BUILD)/tag --overwrite --quiet
	$(SEQTOOL) eval $(BUILD)/tag ud-english-valid
	echo "The quick brown fox jumps over the lazy dog ." | $(SEQTOOL) predict --checkpoint $(BUILD)/tag

bench: $(STAMP)
	$(PY) bench/bench_label.py
	$(PY) bench/bench_lm.py
	$(PY) bench/bench_forecast.py
	$(PY) bench/bench_many.py
	$(PY) bench/bench_engines.py
	$(PY) bench/bench_stack.py
	$(PY) bench/bench_translate.py
	$(PY) bench/bench_levels.py
	$(PY) bench/bench_speed.py
	$(PY) bench/bench_scale.py
	$(PY) bench/bench_lm.py word

# the word-level and large-corpus benchmarks alone (about 90 minutes: 600 s rounds)
bench-word: $(STAMP)
	$(PY) bench/bench_scale.py
	$(PY) bench/bench_lm.py word

stress: $(STAMP)
	$(PY) bench/stress.py

clean:
	rm -rf $(BUILD) runs
