# interpbench: `make benchmark` runs the default benchmark, `make test` runs the tests.
# Both set up everything on a fresh machine: a virtualenv in .venv, torch, the project,
# and (as root with apt) the Debian data packages.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= default
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: benchmark quick test lint system venv lock results clean

benchmark: venv system
	$(BIN)/interpbench run --config $(CONFIG) --results-dir results
	$(BIN)/interpbench publish results/runs/latest --out results
	$(BIN)/interpbench report results/runs/latest
	@echo "leaderboards: results/README.md and results/leaderboards/; report: results/runs/latest/report/index.html"

quick: venv
	$(BIN)/interpbench run --config quick --results-dir results

test: venv system
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not ray"
	@# Ray's own task-state race (ray-project/ray#54846) can kill a driver process without a
	@# summary: the Ray tests run in a process of their own and, if that process fails, once more;
	@# the first run's failure is printed and counted either way (scripts/ray-tests.sh).
	bash scripts/ray-tests.sh $(BIN)/python

lint: venv
	$(BIN)/ruff check .

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[models,test]"
	touch $@

# constraints.txt pins every installed dependency (see its header); regenerate it after a change
lock:
	$(BIN)/python scripts/lock.py

system:
	@bash scripts/setup-system.sh

clean:
	rm -rf $(VENV) build *.egg-info
