# Two commands do all set-up on a fresh machine:
#   make demo   create .venv, install thirdway, run the main job on the embedded default (SQLite)
#   make test   the same set-up, then the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test lint typecheck setup clean browser

# llama-cpp-python compiles llama.cpp from source. Its default build targets the build machine's
# CPU (-march=native), and on CPUs with AMX (Sapphire Rapids) that build crashes with a
# segmentation fault at the first prompt of more than one token. So it is built for portable
# x86-64 with AVX2, with our own flags, once per machine: pip's wheel cache ignores CMAKE_ARGS,
# so the wheel is built without it and kept in a folder named after the flags.
LLAMA_SPEC       := $(shell grep -o '"llama-cpp-python[^"]*"' pyproject.toml | tr -d '"')
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
LLAMA_WHEELS     ?= $(HOME)/.cache/thirdway/llama-$(shell printf '%s %s' '$(LLAMA_SPEC)' '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-16)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@if [ "$$(uname -m)" = x86_64 ] && ! ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
	  echo "building $(LLAMA_SPEC) for portable x86-64 (a few minutes, once) into $(LLAMA_WHEELS)"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --quiet --no-cache-dir --no-deps \
	    -w $(LLAMA_WHEELS) '$(LLAMA_SPEC)'; \
	fi
	@if [ "$$(uname -m)" = x86_64 ]; then \
	  $(BIN)/pip install --quiet --no-deps --force-reinstall "$$(ls -t $(LLAMA_WHEELS)/llama_cpp_python-*.whl | head -1)"; \
	fi
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/thirdway demo

# The console's end-to-end tests drive Debian's Chromium through Playwright (never a downloaded
# browser): install it when it is missing (CI runs as root).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	  else \
	    echo "error: $(CHROMIUM) is missing and apt-get is not available; install Chromium" >&2; \
	    exit 1; \
	  fi; \
	fi

test: $(STAMP) browser
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
