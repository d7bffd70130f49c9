# Two entry points (README "Quick start"): `make demo` and `make test`. Both install the Debian
# packages lockdb needs when they are missing (as root), then build with CMake presets.
#
#   make demo   build (preset dev) and run the worker-counters demo
#   make test   build and run every test (preset dev), then the concurrency tests under
#               ASan+UBSan and TSan, then the install/consumer check
#   make bench  build and run the benchmarks (not part of the tests)

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# Build: cmake g++ make; libraries: nlohmann-json3-dev rapidjson-dev libcli11-dev;
# tests: catch2 python3 python3-filelock jq; benchmarks: libsqlite3-dev liblmdb-dev.
PACKAGES := cmake g++ make nlohmann-json3-dev rapidjson-dev libcli11-dev catch2 \
            python3 python3-filelock jq libsqlite3-dev liblmdb-dev \
            clang libclang-rt-14-dev libfuzzer-14-dev

.PHONY: deps build demo test test-dev test-asan test-tsan bench clean fuzz

deps:
	@missing=""; \
	for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "missing Debian packages:$$missing -- run as root, or: sudo apt-get install$$missing" >&2; \
	    exit 1; \
	  fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	cmake --preset dev
	cmake --build --preset dev -j $(JOBS)

demo: build
	./build/dev/examples/worker_counters

test-dev: build
	ctest --preset dev -j $(JOBS)

test-asan: deps
	cmake --preset asan
	cmake --build --preset asan -j $(JOBS)
	ctest --preset asan -j $(JOBS)

test-tsan: deps
	cmake --preset tsan
	cmake --build --preset tsan -j $(JOBS)
	ctest --preset tsan -j $(JOBS)

test: test-dev test-asan test-tsan
	@echo "all test suites passed (dev, asan, tsan)"

bench: build
	./build/dev/bench/bench_locks
	./build/dev/bench/bench_files --dir /dev/shm --dir $${TMPDIR:-/tmp}
	./build/dev/bench/bench_store
	./build/dev/bench/bench_history
	./build/dev/bench/bench_cli

clean:
	rm -rf build

# ---- fuzzing (fuzz/): each libFuzzer target for FUZZ_SECONDS, new inputs kept in build/fuzz ----
FUZZ_SECONDS ?= 300
fuzz: deps
	cmake -S fuzz -B build/fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build/fuzz -j $(JOBS)
	for t in key_file log_line cli_value key_codec; do \
	  mkdir -p build/fuzz/found/$$t && \
	  ./build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) build/fuzz/found/$$t fuzz/corpus/$$t || exit 1; \
	done
