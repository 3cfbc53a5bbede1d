# Two commands on a fresh machine: `make run` (the lab, end to end) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN := runs/lab

.PHONY: run test install clean

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

clean:
	rm -rf $(VENV) runs
