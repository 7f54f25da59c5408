"""Where the count model's numba kernels spend their time, and what numba's runtime (NRT) costs them.

    perf record -g -o OUT python bench/numba_profile.py perf-map SCRIPT [ARGS...]; perf report -i OUT
    python bench/numba_profile.py calls SCRIPT [ARGS...]
    python bench/numba_profile.py [--rows 50,2000] [--calls 20000] runtime

perf-map runs SCRIPT (e.g. bench/surprise_speed.py ... --child OUT, bench/compress_cpu.py ...) and at its exit writes
/tmp/perf-PID.map, the address and name of every function numba compiled, so that `perf report` names the kernels
and the runtime's NRT_incref / NRT_decref, where it shows "[JIT] tid PID" addresses otherwise (numba's code carries
no symbols). Its kernels are compiled afresh into a temporary cache: code loaded from numba's cache has no names.
calls runs SCRIPT and prints each kernel's calls and thread-CPU (time.thread_time; a wrapper's cost is in them).
runtime: the runtime's cost per call of a kernel that allocates its output and returns it (as kernels.py's do), by
the same loop compiled without the runtime (_nrt=False), writing into an array its caller allocated.
"""

import argparse
import atexit
import collections
import os
import re
import runpy
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

KERNELS = {"kernels": ["directory_search", "entries_of", "merge_sorted", "spread", "blend_shares"],
           "rowkernels": ["last_word_contexts"]}
NAME = re.compile(r"(kernels|rowkernels)\d+(\w+?)B\d")  # module and function in numba's mangled name


def run_script(argv: list[str]) -> None:
    """SCRIPT ARGS... as `python SCRIPT ARGS...` would run it (its folder first on sys.path)."""
    sys.argv = argv
    sys.path.insert(0, str(Path(argv[0]).resolve().parent))
    runpy.run_path(argv[0], run_name="__main__")


def compiled_functions() -> list[tuple[int, str]]:
    """(address, name) of every function in the code numba compiled in this process, by address."""
    import gc

    from numba.core.registry import CPUDispatcher

    found = set()
    for dispatcher in (o for o in gc.get_objects() if isinstance(o, CPUDispatcher)):
        for library in (c.library for c in dispatcher.overloads.values()):
            for function in (f for f in library._final_module.functions if not f.is_declaration):
                found.add((library.get_pointer_to_function(function.name), short_name(function.name)))
    return sorted(a for a in found if a[0])


def short_name(mangled: str) -> str:
    """kernels.spread (the kernel), cpython.kernels.spread (its wrapper from Python), NRT_incref, ..."""
    m = NAME.search(mangled)
    if not m:
        return mangled[:60]
    return ("cpython." if mangled.startswith("_ZN7cpython") else "") + f"{m.group(1)}.{m.group(2)}"


def write_perf_map() -> None:
    """perf's map of this process's jitted code: a function ends where the next begins, 16 KiB at most (numba gives
    no sizes; its kernels are under 6 KiB). Other JIT code (oneDNN's, in torch's threads) can lie in such a gap and
    take a numba name: read the thread that runs the kernels (perf report --tid)."""
    functions = compiled_functions()
    ends = [a for a, _ in functions[1:]] + [functions[-1][0] + 4096] if functions else []
    with open(f"/tmp/perf-{os.getpid()}.map", "w") as f:
        for (address, name), end in zip(functions, ends):
            f.write(f"{address:x} {min(end - address, 1 << 14):x} {name}\n")
    print(f"{len(functions)} functions named in /tmp/perf-{os.getpid()}.map", file=sys.stderr)


def count_calls() -> None:
    """Wrap every kernel: calls and thread-CPU each, printed at exit."""
    import importlib

    spent = collections.defaultdict(lambda: [0, 0.0])
    for module_name, names in KERNELS.items():
        module = importlib.import_module(f"seqlab.countmodel.{module_name}")
        for name in names:  # callers import the kernel at each call (numba's import is lazy): the wrapper is seen
            setattr(module, name, timed(getattr(module, name), spent[name]))
    atexit.register(lambda: [print(f"{name:<20} {calls:>7,} calls {cpu:7.3f} CPU-s {1e6 * cpu / calls:8.1f} us a call",
                                   file=sys.stderr) for name, (calls, cpu) in sorted(spent.items()) if calls])


def timed(kernel, tally: list):
    def call(*args):
        start = time.thread_time()
        out = kernel(*args)
        tally[0] += 1
        tally[1] += time.thread_time() - start
        return out
    return call


def runtime_per_call(rows: list[int], calls: int) -> None:
    from numba import njit

    @njit(nogil=True)
    def allocating(x):
        out = np.empty(len(x))
        for i in range(len(x)):
            out[i] = x[i] * 2.0
        return out

    @njit(nogil=True, _nrt=False)
    def into(x, out):
        for i in range(len(x)):
            out[i] = x[i] * 2.0

    for n in rows:
        x = np.arange(n, dtype=np.float64)
        allocating(x), into(x, np.empty(n))  # compiled before the timing
        start = time.thread_time()
        for _ in range(calls):
            allocating(x)
        middle = time.thread_time()
        for _ in range(calls):
            into(x, np.empty(n))
        end = time.thread_time()
        print(f"{n:>6} rows: allocated in the kernel (runtime) {1e6 * (middle - start) / calls:6.2f} us a call, "
              f"by its caller (_nrt=False) {1e6 * (end - middle) / calls:6.2f} us a call")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--rows", default="50,2000", help="runtime: the arrays' lengths")
    ap.add_argument("--calls", type=int, default=20_000, help="runtime: calls timed of each")
    ap.add_argument("mode", choices=["perf-map", "calls", "runtime"])
    ap.add_argument("script", nargs=argparse.REMAINDER, help="SCRIPT [ARGS...] (its options are its own)")
    args = ap.parse_args()
    script = args.script
    if args.mode == "runtime":
        return runtime_per_call([int(n) for n in args.rows.split(",")], args.calls)
    if not script:
        ap.error(f"{args.mode} needs a script to run: numba_profile.py {args.mode} SCRIPT [ARGS...]")
    if args.mode == "perf-map":
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba_profile.")  # before numba's import
        atexit.register(shutil.rmtree, os.environ["NUMBA_CACHE_DIR"])
        atexit.register(write_perf_map)  # first: atexit runs the last registered first
    else:
        count_calls()
    run_script(script)


if __name__ == "__main__":
    main()
