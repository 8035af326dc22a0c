# The README's commands: `make demo` (set up everything, train, evaluate) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch==2.13.0 is the CPU build these machines carry; elsewhere override, e.g. `make setup TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
DEMO_MINUTES ?= 3

.PHONY: setup data demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# Fashion-MNIST: Debian's copy where apt-get works (no network here but package registries), else the canonical download.
data: setup
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		(apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1) || true; fi
	$(BIN)/allmlp data fetch fashion_mnist

demo: data
	$(BIN)/allmlp train fashion_mixer train.max_minutes=$(DEMO_MINUTES) --run-dir runs/demo_fashion_mixer
	$(BIN)/allmlp eval runs/demo_fashion_mixer
	$(BIN)/allmlp data fetch shakespeare
	$(BIN)/allmlp train shakespeare_mixer train.max_minutes=$(DEMO_MINUTES) --run-dir runs/demo_shakespeare_mixer
	$(BIN)/allmlp generate runs/demo_shakespeare_mixer --prompt "ROMEO:" --max-new-tokens 300 --temperature 0.8 --seed 0
	@echo "To chat with, classify with and browse these runs in a browser: $(BIN)/allmlp serve runs"

# The report page's browser check needs Debian's chromium + chromedriver: installed here when missing and root.
test: setup
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
			(apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1) || \
			echo "make test: apt-get could not install chromium chromium-driver" >&2; \
		else echo "make test: no /usr/bin/chromium (as root: apt-get install -y chromium chromium-driver)" >&2; fi; fi
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Every benchmark, one after the other (about 8 hours on 2 CPU cores: shakespeare alone takes ~6);
# each writes benchmarks/results/*.json with the arguments its committed file was made with.
BENCHMARKS ?= engine_overhead faults ngram fashion_mnist names shakespeare bengio_three highorder blocks ddp serve \
	precision generate bigdata context
bench: data
	$(BIN)/allmlp data fetch shakespeare names
	@for b in $(BENCHMARKS); do echo "== benchmarks/$$b.py"; \
		case $$b in faults) extra="--kills 240 --per-chain 30";; generate) extra="--threads 1";; \
			bigdata) extra="--repeats 4";; context) extra="--gpt-setting 32 4e-3 128";; *) extra="";; esac; \
		$(BIN)/python benchmarks/$$b.py $$extra || exit 1; done

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
