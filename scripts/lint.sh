#!/usr/bin/env bash
# make lint: the include graph, clang-format (check only) and clang-tidy over
# weft's sources.
set -uo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
rc=0
# The module graph (docs/architecture.md): no include against it.
if ! /usr/bin/python3 scripts/include_graph.py .; then rc=1; fi
files=$(git ls-files 'src/*.cc' 'src/*.h' 'tests/*.cc' 'bench/*.cc')
echo "lint: clang-format on $(echo "$files" | wc -w) files"
if ! clang-format --dry-run -Werror $files; then
  echo "lint: formatting differs: run 'make format'"
  rc=1
fi
echo "lint: clang-tidy (compile_commands.json from $BUILD)"
# clang 14 does not announce C++20 coroutines the way Asio's config looks for
# them with libstdc++ 12: say so explicitly.
CORO=(--extra-arg=-DASIO_HAS_CO_AWAIT=1 --extra-arg=-DASIO_HAS_STD_COROUTINE=1
      --extra-arg=-D__cpp_impl_coroutine=201902L)
if ! clang-tidy -p "$BUILD" --quiet "${CORO[@]}" $(git ls-files 'src/*.cc') 2>/dev/null | tee /tmp/weft-tidy.txt | grep -E "warning:|error:"; then
  echo "lint: clang-tidy clean"
else
  rc=1
fi
exit $rc
