# weft: the two commands of the README are `make quickstart` and `make test`.
# Both install what they need from Debian's packages first (scripts/deps.sh).
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all deps build test test-fast test-slow test-asan quickstart tour lint format fuzz bench bench-h2 clean

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# Every suite: unit, fuzz corpus replay, integration (real processes), slow.
test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 1200

# Without the slow suites (large transfers).
test-fast: build
	cd $(BUILD) && ctest --output-on-failure -LE slow

test-slow: build
	cd $(BUILD) && ctest --output-on-failure -L slow

# The integration suites against an ASan+UBSan build of weft. Asio 1.22
# frees some recycled blocks with a different call than it allocated them
# with (malloc vs operator delete); ASan's mismatch check is off for that.
test-asan: deps
	cmake -S . -B build-asan -G Ninja -DWEFT_SANITIZE=ON -DWEFT_TESTS=OFF -DWEFT_BENCH=OFF
	cmake --build build-asan -j $(JOBS) --target weft
	ASAN_OPTIONS=alloc_dealloc_mismatch=0:detect_leaks=0 /usr/bin/python3 -m pytest -v -p no:cacheprovider \
	  -o timeout=300 tests/integration --weft=$(CURDIR)/build-asan/weft

# The main job: a whole mesh on this machine with live golden metrics
# (`weft up`); Ctrl-C stops it. DURATION=30s runs it for a fixed time.
DURATION ?=
quickstart: build
	$(BUILD)/weft up examples/quickstart.yaml $(if $(DURATION),--duration $(DURATION))

# A guided tour of the pieces one by one: proxy, server, agent, mTLS, policy.
tour: build
	@bash scripts/quickstart.sh $(BUILD)/weft

lint: deps $(BUILD)/build.ninja
	@bash scripts/lint.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

# libFuzzer targets (clang, ASan+UBSan); FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz: deps
	CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DWEFT_FUZZ=ON -DWEFT_BENCH=OFF
	cmake --build build-fuzz -j $(JOBS) --target fuzz_http1_request fuzz_http1_response fuzz_chunked fuzz_config fuzz_manifest fuzz_catalog fuzz_dns fuzz_csr fuzz_capture fuzz_http2
	@bash scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

bench: build
	@bash bench/run.sh $(BUILD)/weft

# HTTP/2 and gRPC against HAProxy and nginx, the mesh path for gRPC, memory
# per stream and per connection: bench/RESULTS-h2.md.
bench-h2: deps $(BUILD)/build.ninja
	@BUILD=$(BUILD) JOBS=$(JOBS) bash bench/h2.sh $(BUILD)/weft

clean:
	rm -rf $(BUILD) build-fuzz build-asan
