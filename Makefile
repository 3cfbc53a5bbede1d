# Two commands on a fresh machine: `make run` (the lab, end to end) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN := runs/lab
# The real MNIST beside the project (../shared/data/mnist) unless DIGITREC_DATA names another folder:
# the tests that need it skip without it, and `make run` would look in the cache and then download.
export DIGITREC_DATA ?= $(abspath $(wildcard ../shared/data/mnist))

.PHONY: run test install system-packages pretrained best-seeds fashion line-reader benchmarks clean

$(BIN)/digitrec: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The CPU wheel first, so nothing below can pull a CUDA build of torch.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[train,test]'
	touch $@

install: $(BIN)/digitrec

run: install
	$(BIN)/digitrec train --model tutorial --out $(RUN) --force
	$(BIN)/digitrec resume $(RUN) --epochs 8
	$(BIN)/digitrec evaluate $(RUN)

# Chromium, Fashion-MNIST and qemu-user from Debian: installed where apt-get can run, else named.
system-packages:
	sh scripts/debian-packages.sh

test: install system-packages
	$(BIN)/python -m pytest -q

# The weights that ship in the package (docs/model-card.md): the `best` recipe, its averaged weights
# tuned on digits the reader cut out of photos of MNIST training digits (scripts/photo_tune.py), as
# safetensors, and the same network as a checked ONNX file for the onnx backend. About 30 minutes on
# an idle 2-core CPU that computes bfloat16 natively (AVX512-BF16): 12 to train, 16 to photograph and
# tune, 1 to export; about 40 where it does not (training in fp32 takes twice as long).
WEIGHTS := src/digitrec/weights
pretrained: install
	$(BIN)/digitrec train --model best --out runs/best --force
	$(BIN)/python scripts/photo_tune.py runs/best --out $(WEIGHTS)/best.safetensors
	$(BIN)/digitrec export $(WEIGHTS)/best.safetensors --format onnx --out $(WEIGHTS)/best.onnx

# Two more seeds of `best` beside the shipped one (seed 1), for its 3-seed mean and the ensemble of
# docs/benchmarks.md. About 12 minutes each, like the one above.
best-seeds: install
	$(BIN)/digitrec train --model best --seed 2 --out runs/best-seed2 --force
	$(BIN)/digitrec train --model best --seed 3 --out runs/best-seed3 --force

# The line reader that ships in the package (docs/line-reader-card.md): a CNN + BiGRU with a CTC head,
# trained on lines composed from MNIST training digits, its weights as safetensors and a checked ONNX
# export. About 25 minutes on both cores (it trains by the clock: on a CPU half as fast, one thread
# got 1,537 steps, not the shipped weights' 2,702, and read fewer touching photos right; docs/line-reader-card.md).
line-reader: install
	$(BIN)/python -m digitrec.line_training --out $(WEIGHTS) --minutes 25 --threads 2

# The `best` preset on Fashion-MNIST (docs/benchmarks.md), about 12 minutes.
fashion: install
	$(BIN)/digitrec train --model best --dataset fashion-mnist --out runs/best-fashion --force

# Every benchmark table in docs/benchmarks.md (`best` taken from the runs of `make pretrained best-seeds`).
benchmarks: install
	$(BIN)/python benchmarks/train_speed.py --best-run runs/best runs/best-seed2 runs/best-seed3 --baseline-epochs 1
	$(BIN)/python benchmarks/infer_speed.py
	$(BIN)/python benchmarks/predict_startup.py
	$(BIN)/python benchmarks/read_photos.py
	$(BIN)/python benchmarks/read_conditions.py
	$(BIN)/python benchmarks/other_handwriting.py
	$(BIN)/python benchmarks/serve_load.py --backend onnx
	$(BIN)/python benchmarks/fashion.py runs/best-fashion

clean:
	rm -rf $(VENV) runs
