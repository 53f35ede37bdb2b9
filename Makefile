# The two commands of the README: `make run` and `make test`. Everything else is what they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test venv toolchain openclaw system-deps migrate bench clean

# The sandbox unless CLAWDET_SANDBOX says otherwise, in the environment or in .env.
SANDBOX_IN_DOTENV := $(shell grep -s '^CLAWDET_SANDBOX=' .env | tail -n 1 | cut -d= -f2-)

run: venv toolchain openclaw migrate
	CLAWDET_SANDBOX=$${CLAWDET_SANDBOX:-$(or $(SANDBOX_IN_DOTENV),true)} $(VENV)/bin/clawdet run

test: venv system-deps toolchain openclaw
	bash tests/run.sh $(PYTEST_ARGS)

venv: $(STAMP)

$(STAMP):
	@command -v python3 >/dev/null || { echo "python3 (3.11+) is required"; exit 1; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

toolchain: venv
	$(PY) -m toolchain ensure

openclaw: venv
	$(PY) -m sandbox.openclaw ensure

system-deps:
	bash tests/system-deps.sh

migrate: venv
	$(VENV)/bin/clawdet db upgrade

bench: venv toolchain
	for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .data .pytest_cache
