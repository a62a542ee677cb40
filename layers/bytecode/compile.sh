#!/bin/sh
# Compile the built layers' (and functions') Python to CPython 3.12 bytecode; see compile_bytecode.py.
# Uses python3.12 (or $PYTHON312) when the machine has it, otherwise Pyodide under Node.js (installed here from the
# lock file on first use). With neither, the build goes on without bytecode and says what it costs.
#   layers/bytecode/compile.sh DIR [DIR ...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python312=${PYTHON312:-python3.12}
# `command -v` is not enough: a pyenv shim answers for a version that is not selected.
if "$python312" -c "" >/dev/null 2>&1; then
	exec "$python312" "$here/compile_bytecode.py" "$@"
fi
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
	if [ ! -d "$here/node_modules/pyodide" ]; then
		npm ci --silent --no-audit --no-fund --prefix "$here"
	fi
	exec node "$here/pyodide_compile.mjs" "$@"
fi
echo "WARNING: neither python3.12 nor Node.js found: the layers ship without bytecode, and every" >&2
echo "cold start compiles the imported modules (about +300 ms per init, docs/cost.md)." >&2
