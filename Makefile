# Two commands on a fresh machine: `make run` (the lab, end to end) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN := runs/lab

.PHONY: run test install pretrained benchmarks clean

$(BIN)/digitrec: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The CPU wheel first, so nothing below can pull a CUDA build of torch.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/digitrec

run: install
	$(BIN)/digitrec train --model tutorial --out $(RUN) --force
	$(BIN)/digitrec resume $(RUN) --epochs 8
	$(BIN)/digitrec evaluate $(RUN)

test: install
	$(BIN)/python -m pytest -q

# The weights that ship in the package (docs/model-card.md): the `best` recipe, its averaged weights
# as safetensors, and the same network as a checked ONNX file for the onnx backend. About 40 minutes.
WEIGHTS := src/digitrec/weights
pretrained: install
	$(BIN)/digitrec train --model best --out runs/best --force
	$(BIN)/digitrec export runs/best --format safetensors --out $(WEIGHTS)/best.safetensors
	$(BIN)/digitrec export runs/best --format onnx --out $(WEIGHTS)/best.onnx

# Every benchmark table in docs/benchmarks.md (`best` taken from runs/best, see `make pretrained`).
benchmarks: install
	$(BIN)/python benchmarks/train_speed.py --best-run runs/best --baseline-epochs 1
	$(BIN)/python benchmarks/infer_speed.py
	$(BIN)/python benchmarks/read_photos.py
	$(BIN)/python benchmarks/serve_load.py --backend onnx

clean:
	rm -rf $(VENV) runs
