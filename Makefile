# The two commands of the README: `make run` and `make test`. Both set up .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest docs bench bench-quick bench-hotpath bench-sighup bench-h2 fuzz soak autobahn clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[standard]' --group dev
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/fulmen examples.hello:app --host 127.0.0.1 --port 8000

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src

typecheck: $(STAMP)
	$(BIN)/mypy src/fulmen

pytest: $(STAMP)
	$(BIN)/pytest

docs: $(STAMP)
	$(BIN)/python -c 'import fulmen.options as o; print(o.render_settings_markdown(), end="")' > docs/settings.md

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(ARGS)

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/run.py --quick $(ARGS)

bench-hotpath: $(STAMP)
	$(BIN)/python benchmarks/hotpath.py $(or $(WORKLOAD),plaintext) $(ARGS)

bench-sighup: $(STAMP)
	$(BIN)/python benchmarks/sighup_under_load.py $(ARGS)

# HTTP/2 under h2load (Debian's nghttp2-client) against granian and hypercorn, which live in a
# virtual environment of their own, not in the project's.
PEERS := benchmarks/.venv-peers

$(PEERS)/.installed:
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet granian hypercorn uvloop
	touch $@

bench-h2: $(STAMP) $(PEERS)/.installed
	command -v h2load >/dev/null || (apt-get update && apt-get install -y --no-install-recommends nghttp2-client)
	$(BIN)/python benchmarks/h2.py $(ARGS)

fuzz: $(STAMP)
	$(BIN)/python benchmarks/fuzz_long.py --seconds $(or $(SECONDS),600) $(ARGS)

soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py $(ARGS)

# The Autobahn|Testsuite WebSocket fuzzing suite, every case, both engines (about 20 minutes; wstest
# runs on Python 2.7 in .venv-autobahn, made on first use). CASES=1.*,12.1.* for a subset.
autobahn: $(STAMP)
	$(BIN)/python tools/autobahn.py $(if $(CASES),--cases '$(CASES)') $(ARGS)

clean:
	rm -rf $(VENV) $(PEERS) .venv-autobahn .autobahn build dist *.egg-info src/*.egg-info .mypy_cache .pytest_cache .ruff_cache

# Free-threaded Python (docs/free-threading.md): CPython 3.13t built once per machine (cached in
# ~/.cache/fulmen), and .venv-ft with fulmen on it. test-ft runs the whole suite there with the GIL
# off as the interpreter leaves it (PYTHON_GIL unset: a dependency that turns it on must show).
.PHONY: python-ft test-ft bench-ft
FT_BIN := .venv-ft/bin

python-ft:
	tools/build_python_ft.sh

test-ft: python-ft
	env -u PYTHON_GIL FULMEN_TEST_FREE_THREADED=1 $(FT_BIN)/python -m pytest $(ARGS)

bench-ft: python-ft
	env -u PYTHON_GIL $(FT_BIN)/python benchmarks/free_threading.py $(ARGS)
