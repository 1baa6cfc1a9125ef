# vigil: the two commands a newcomer needs are `make demo` and `make check` (see README.md).
# meson + ninja do the work; this file only sequences them.

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
MESON      ?= meson
FUZZ_SECONDS ?= 600

.PHONY: all deps demo check test test-asan fuzz bench install clean format

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD)/build.ninja:
	$(MESON) setup $(BUILD)

deps:
	@scripts/install-deps

demo: deps all
	scripts/demo $(BUILD)

# Every test, twice: a normal build and an ASan+UBSan build; prints "N passed, N failed" last.
check: deps
	scripts/check $(BUILD) $(ASAN_BUILD)

test: all
	$(MESON) test -C $(BUILD) --print-errorlogs

# libFuzzer builds (clang); run one target with `make fuzz TARGET=toml`.
fuzz: deps
	scripts/fuzz $(FUZZ_BUILD) $(or $(TARGET),toml) $(FUZZ_SECONDS)

bench: all
	ninja -C $(BUILD) bench
	@echo "benchmarks built in $(BUILD)/bench; see bench/README.md"

install: all
	$(MESON) install -C $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
