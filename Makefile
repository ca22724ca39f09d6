# Two commands set up a fresh machine: `make demo` (train RS2 against full data on Fashion-MNIST and
# write the report) and `make test`. Both create the virtual environment and install what they need.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build by default; on a CUDA machine: make install TORCH_SPEC="torch" FAISS_EXTRA=",gpu"
TORCH_SPEC ?= torch==2.13.0
FAISS_EXTRA ?= ,faiss
FMNIST_DIR ?= /usr/share/datasets/fashion-mnist
WORDNET_DIR ?= /usr/share/wordnet
DEMO_OUT ?= outputs/demo

.PHONY: install data demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,launchers,bench,text$(FAISS_EXTRA)]"
	touch $@

# Fashion-MNIST and WordNet (text retrieval) from Debian's packages when missing and we may install packages.
data:
	@if [ -f "$(FMNIST_DIR)/train-images-idx3-ubyte.gz" ] || [ -n "$$SELECTKIT_DATA" ]; then \
		echo "Fashion-MNIST: found"; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)) >/dev/null; \
	else \
		echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist', or put the four IDX .gz files in data/ (or set SELECTKIT_DATA)" >&2; exit 1; \
	fi
	@if [ -f "$(WORDNET_DIR)/data.noun" ] || [ -n "$$WNSEARCHDIR" ]; then \
		echo "WordNet: found"; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -q wordnet-base || (apt-get update -q && apt-get install -y -q wordnet-base)) >/dev/null; \
	else \
		echo "WordNet is missing: run 'sudo apt-get install wordnet-base' (or set WNSEARCHDIR to a folder of its data.* files)" >&2; exit 1; \
	fi

# RS2 (10% per epoch, 30 epochs) beside full data (8 epochs) and full data compressed to RS2's steps
demo: install data
	$(VENV)/bin/selectkit-train -m experiment=demo_rs2,demo_full,demo_compressed \
		hydra.sweep.dir=$(DEMO_OUT) hydra.sweep.subdir='$${hydra.job.num}_$${run_name}'
	$(VENV)/bin/selectkit-report $(DEMO_OUT)

test: install data
	@WANDB_MODE=disabled OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

bench: install data
	$(PY) scripts/bench_rs2.py

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
