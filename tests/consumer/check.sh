#!/bin/sh
# Installs the built lockdb (stripped) into a temp prefix, builds the consumer against it with
# find_package, then builds it again with add_subdirectory of the source tree, with warnings as
# errors, lockdb's and the consumer's own (-Wall -Wextra over the public headers); runs both.
# The add_subdirectory build compiles the library again: at -O0 without debug info (Debug with
# CMAKE_CXX_FLAGS_DEBUG=-O0), which costs 40% less CPU than the Release build it was. What it
# shows (the subproject configures, lockdb::lockdb brings its include directories, C++20 and
# dependencies, the consumer links and runs) does not depend on optimisation, and the dev build
# already compiles the same sources at -O2 with NDEBUG and -Werror.
#   check.sh SOURCE_DIR BUILD_DIR
set -eu
src=$1
build=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" --strip >/dev/null
cmake -S "$src/tests/consumer" -B "$work/installed" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/installed" >/dev/null
"$work/installed/consumer"
cmake -S "$src/tests/consumer" -B "$work/subdir" -DLOCKDB_SOURCE_DIR="$src" \
      -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0 -DLOCKDB_WERROR=ON \
      -DCONSUMER_WERROR=ON >/dev/null
cmake --build "$work/subdir" -j2 --target consumer
"$work/subdir/consumer"
