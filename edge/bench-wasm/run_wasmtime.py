"""Runs a wasm32-wasip1 command module under wasmtime (Cranelift, default
settings), passing the remaining arguments to it; stdout/stderr are
inherited and its exit code is ours.

    python run_wasmtime.py MODULE.wasm [ARGS...]

`cargo xtask bench` runs edge/bench-wasm this way with the `wasmtime` PyPI
package pinned in xtask/src/bootstrap.rs (.tools/venv).
"""

import sys

import wasmtime


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    engine = wasmtime.Engine(wasmtime.Config())
    module = wasmtime.Module.from_file(engine, path)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [path] + sys.argv[2:]
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    store.set_wasi(wasi)
    instance = linker.instantiate(store, module)
    try:
        instance.exports(store)["_start"](store)
    except wasmtime.ExitTrap as e:
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
