"""Where the test suite's time goes: JAX's compile events summed per test and per program.

As a pytest plugin it records, for every test, its wall and CPU seconds and the seconds JAX spent
tracing, lowering and compiling (backend compile includes persistent-cache reads), with the
number of each and the cache hits, as JSON lines in $COMPILE_ACCOUNTING (one file per worker).
Subprocesses are not counted; a test whose wall time is far above its CPU time waits on them.
Run as a script, it prints the totals, the programs compiled most, and the heaviest tests:

    mkdir -p /tmp/acct && COMPILE_ACCOUNTING=/tmp/acct PYTHONPATH=src:benchmarks pytest -p compile_accounting
    python benchmarks/compile_accounting.py /tmp/acct

(2026-12-07, the whole suite at 34bdcd1: 2,435 backend compiles of 299 s, 126 s tracing and 99 s
lowering in the workers; counted in every process, subprocesses too, 663 `broadcast_in_dim` and
660 `stage` programs, one per array shape, which led to ff8ee21 and 5a6ea61.)
"""

import collections
import json
import os
import sys
import time
from pathlib import Path

import pytest

_EVENTS = {"/jax/core/compile/backend_compile_duration": "backend", "/jax/core/compile/jaxpr_trace_duration": "trace",
           "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower"}
_current: collections.Counter = collections.Counter()
_programs: collections.Counter = collections.Counter()  # (kind, function name) -> seconds, this test


def _listen(event, seconds, fun_name=None, **kw):
    if event in _EVENTS:
        kind = _EVENTS[event]
        _current[kind] += seconds
        _current[f"{kind}_n"] += 1
        _programs[f"{kind} {fun_name}"] += seconds
    elif event == "/jax/compilation_cache/cache_retrieval_time_sec":
        _current["cache_hits"] += 1


def pytest_configure(config):
    import jax.monitoring

    if not os.environ.get("COMPILE_ACCOUNTING"):
        raise SystemExit("compile_accounting: set COMPILE_ACCOUNTING to a folder for its records")
    jax.monitoring.register_event_duration_secs_listener(_listen)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current.clear()
    _programs.clear()
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    record = {"test": item.nodeid, "wall": round(time.perf_counter() - wall, 3),
              "cpu": round(time.process_time() - cpu, 3), **{k: round(v, 3) for k, v in _current.items()},
              "programs": {k: round(v, 3) for k, v in _programs.items()}}
    with open(Path(os.environ["COMPILE_ACCOUNTING"]) / f"tests-{os.getpid()}.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def summarise(folder: Path, top: int = 25) -> None:
    records = [json.loads(line) for p in sorted(folder.glob("tests-*.jsonl")) for line in p.read_text().splitlines()]
    if not records:
        raise SystemExit(f"compile_accounting: no records in {folder}")
    totals, programs = collections.Counter(), collections.Counter()
    for r in records:
        totals.update({k: v for k, v in r.items() if isinstance(v, (int, float))})
        programs.update(r["programs"])
    print(f"{len(records)} tests: wall {totals['wall']:.0f} s summed over workers, CPU {totals['cpu']:.0f} s; "
          f"backend compile {totals['backend']:.0f} s ({totals['backend_n']:.0f}), trace {totals['trace']:.0f} s, "
          f"lower {totals['lower']:.0f} s, cache hits {totals['cache_hits']:.0f}")
    print("\nprograms by backend-compile seconds:")
    for name, seconds in [(k, v) for k, v in programs.most_common() if k.startswith("backend ")][:top]:
        print(f"  {seconds:7.1f}  {name[len('backend '):]}")
    print("\ntests by wall seconds (wall, CPU, backend, trace, lower):")
    for r in sorted(records, key=lambda r: -r["wall"])[:top]:
        print(f"  {r['wall']:6.1f} {r['cpu']:6.1f} {r.get('backend', 0):6.1f} {r.get('trace', 0):5.1f} "
              f"{r.get('lower', 0):5.1f}  {r['test']}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    summarise(Path(sys.argv[1]))
