# Two entry points (README "Quick start"): `make demo` and `make test`. Both install the Debian
# packages lockdb needs when they are missing (as root), then build with CMake presets.
#
#   make demo   build (preset dev) and run the worker-counters demo
#   make test   check the formatting, build and run every test (preset dev, with the
#               install/consumer check and a short run of each fuzz target), then the
#               concurrency tests under ASan+UBSan and the threaded ones under TSan
#   make bench  build and run the benchmarks (not part of the tests)
#   make tidy   clang-tidy over the library (not part of the tests: see README)
#   make format-check   clang-format --dry-run over every source file (part of `make test`)

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# Tests run two per core: many of them wait (for processes they start, for etcd, for a timeout
# they test) rather than compute, and every test makes its own directories and ports.
TEST_JOBS ?= $(shell echo $$(( $(JOBS) * 2 )))
# Build: cmake g++ make; libraries: nlohmann-json3-dev rapidjson-dev libcli11-dev;
# tests: catch2 python3 python3-filelock jq clang-format; benchmarks: libsqlite3-dev liblmdb-dev
# (make tidy adds clang-tidy); the etcd backend: libcurl4-openssl-dev, and etcd itself for its
# tests and demo.
PACKAGES := cmake g++ make nlohmann-json3-dev rapidjson-dev libcli11-dev catch2 \
            python3 python3-filelock jq clang-format libsqlite3-dev liblmdb-dev \
            libcurl4-openssl-dev etcd-server etcd-client \
            clang libclang-rt-14-dev libfuzzer-14-dev
# The sources clang-format checks (and clang-tidy, those under lib/src).
SOURCES = $(shell git ls-files 'lib/*.cpp' 'lib/*.hpp' 'tools/*.cpp' 'tools/*.hpp' \
            'tests/*.cpp' 'tests/*.hpp' 'examples/*.cpp' 'examples/*.hpp' 'bench/*.cpp' \
            'bench/*.hpp' 2>/dev/null || find lib tools tests examples bench -name '*.[ch]pp')

.PHONY: deps build demo test test-dev test-asan test-tsan format-check tidy bench clean fuzz

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
	ctest --preset dev -j $(TEST_JOBS)

test-asan: deps
	cmake --preset asan
	cmake --build --preset asan -j $(JOBS)
	ctest --preset asan -j $(TEST_JOBS)

test-tsan: deps
	cmake --preset tsan
	cmake --build --preset tsan -j $(JOBS)
	ctest --preset tsan -j $(TEST_JOBS)

test: format-check test-dev test-asan test-tsan
	@echo "all test suites passed (format, dev, asan, tsan)"

format-check: deps
	clang-format --dry-run --Werror $(SOURCES)

tidy: PACKAGES += clang-tidy
tidy: build
	clang-tidy -p build/dev --quiet $(filter lib/src/%.cpp,$(SOURCES))

bench: build
	cmake --build --preset dev -j $(JOBS) --target benchmarks
	./build/dev/bench/bench_locks
	./build/dev/bench/bench_files --dir /dev/shm --dir $${TMPDIR:-/tmp}
	./build/dev/bench/bench_store
	./build/dev/bench/bench_history
	./build/dev/bench/bench_cli
	./build/dev/bench/bench_etcd

clean:
	rm -rf build

# ---- fuzzing (fuzz/): each libFuzzer target for FUZZ_SECONDS, new inputs kept in build/fuzz ----
# (`make test` runs each for 5 s: the tests fuzz_build and fuzz_<target> of the dev preset.)
FUZZ_SECONDS ?= 300
fuzz: deps
	cmake -DSOURCE_DIR=fuzz -DBINARY_DIR=build/fuzz -DCOMPILER=clang++ -DJOBS=$(JOBS) -P fuzz/build.cmake
	for t in key_file log_line cli_value key_codec; do \
	  mkdir -p build/fuzz/found/$$t && \
	  ./build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) build/fuzz/found/$$t fuzz/corpus/$$t || exit 1; \
	done
