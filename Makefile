# Thin wrapper over CMake. The two commands of the README:
#   make run    install build packages if missing, build, serve on embedded defaults
#   make test   install test packages if missing, build with sanitizers, run all tests
# Other targets: build, unit, conformance, e2e, bench, bench-wasm, valgrind, install, clean.
# make test also builds the plain binary: the valgrind tests run it.

BUILD      ?= build
ASAN_BUILD ?= build-asan
PREFIX     ?= /usr/local
DATA       ?= $(CURDIR)/var
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PYTEST     ?= /usr/bin/python3 -m pytest
CMAKE_OPTS ?=

# apt-get cannot run twice at once: keep targets in order even under -j
# (each cmake --build is parallel on its own).
.NOTPARALLEL:

.PHONY: all build run test deps-build deps-test deps-bench unit e2e asan bench valgrind \
        install clean conformance bench-wasm fuzz-quick

all: build

deps-build:
	@scripts/deps.sh build
deps-test:
	@scripts/deps.sh test
	@tests/mcp/install.sh
deps-bench:
	@scripts/deps.sh bench

$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAXTON_TESTS=OFF $(CMAKE_OPTS)

build: deps-build $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

run: build
	@mkdir -p -m 700 $(DATA)
	@echo "caxton: data dir $(DATA), logs in $(DATA)/log; stop with Ctrl-C"
	exec $(BUILD)/caxton serve --data-dir $(DATA) --log-dir $(DATA)/log

$(ASAN_BUILD)/Makefile:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCAXTON_SANITIZE=ON $(CMAKE_OPTS)

asan: deps-test $(ASAN_BUILD)/Makefile
	cmake --build $(ASAN_BUILD) -j $(JOBS)

unit: asan
	cd $(ASAN_BUILD) && ctest --output-on-failure

e2e: asan build
	CAXTON_BIN=$(CURDIR)/$(ASAN_BUILD)/caxton CAXTON_PLAIN_BIN=$(CURDIR)/$(BUILD)/caxton \
	  $(PYTEST) -q tests/e2e

test: unit conformance fuzz-quick e2e

# The fuzzers inside make test (regression inputs first): the WebAssembly
# engine for FUZZ_QUICK_SECONDS, each text parser for FUZZ_QUICK_PARSER_SECONDS.
FUZZ_QUICK_SECONDS ?= 30
FUZZ_QUICK_PARSER_SECONDS ?= 10
fuzz-quick: asan
	tests/fuzz/run.sh $(FUZZ_QUICK_SECONDS)
	tests/fuzz/run_parsers.sh $(FUZZ_QUICK_PARSER_SECONDS)

# The WebAssembly spec test suite (../shared/wasm-testsuite or
# CAXTON_WASM_TESTSUITE), alone.
conformance: asan
	tests/conformance/run.sh $(CURDIR)/$(ASAN_BUILD)/wasm_spec_runner

# libFuzzer on the WebAssembly engine under ASan+UBSan for FUZZ_SECONDS
# (regression inputs first); a crashing input lands in tests/fuzz/crashes/.
FUZZ_SECONDS ?= 300
.PHONY: fuzz-wasm fuzz-parsers
fuzz-wasm: deps-test
	tests/fuzz/run.sh $(FUZZ_SECONDS)

# libFuzzer on the agent definition, FIPA-ACL message and LLM answer parsers, FUZZ_SECONDS each.
fuzz-parsers: deps-test
	tests/fuzz/run_parsers.sh $(FUZZ_SECONDS)

bench: deps-bench build
	bench/run.sh $(BUILD)/caxton
	/usr/bin/python3 bench/agents_bench.py $(BUILD)/caxton
	@if command -v npm >/dev/null 2>&1; then tests/mcp/install.sh; fi
	@if [ -d tests/mcp/node_modules ]; then \
	  echo "/usr/bin/python3 bench/tools_bench.py $(BUILD)/caxton"; \
	  /usr/bin/python3 bench/tools_bench.py $(BUILD)/caxton; \
	else \
	  echo "bench: skipping bench/tools_bench.py: tests/mcp/node_modules is missing" \
	       "(run scripts/deps.sh test, then tests/mcp/install.sh)"; \
	fi
	bench/memory/run.sh $(BUILD)

# WebAssembly engine: the same C programs natively, in Caxton and in wabt.
bench-wasm: deps-bench build
	/usr/bin/python3 bench/wasm/bench.py $(BUILD)/wasm_bench_run

valgrind: deps-test build
	CAXTON_PLAIN_BIN=$(CURDIR)/$(BUILD)/caxton $(PYTEST) -q tests/e2e/test_valgrind.py

install: build
	packaging/install.sh "$(BUILD)/caxton" "$(DESTDIR)" "$(PREFIX)"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
