import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._fakes import fake_episode_dataset

SHARED_DATA = (Path(__file__).resolve().parents[2] / "shared" / "data").resolve()
# Tests read the real MNIST test set through the normal loader and never touch the network.
os.environ.setdefault("GTMM_DATA", str(SHARED_DATA))
os.environ["GTMM_OFFLINE"] = "1"
# The suite is compile-bound (hundreds of small programs, a few steps each), so it compiles
# cheaply: XLA's backend at optimisation level 0 (tests/test_model.py and test_reliability.py took
# 349 s at the default level and 224 s at 0, cold cache), and XLA's older loop emitters instead of
# its fusion emitters (a DNC training step compiles in 2.8 s against 6.9 at level 0,
# benchmarks/compile_parts.py dnc; the suite took 414 s against 741 s). XLA plans to retire the
# loop emitters, and it aborts on a flag it does not know, so that flag is used only where a
# probe finds it known (the summary says when it is not). Subprocesses and the xdist workers
# inherit XLA_FLAGS.
# GTMM_TEST_XLA_DEFAULT=1 compiles the suite as users' runs are compiled.
LEVEL_0 = "--xla_backend_optimization_level=0"
LOOP_EMITTERS = "--xla_cpu_use_fusion_emitters=false"


def _xla_knows(flag: str) -> bool:
    probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], capture_output=True,
                           env=dict(os.environ, XLA_FLAGS=flag), timeout=120)
    return probe.returncode == 0


_UNKNOWN = []  # cheap-compile flags this XLA does not know, named at the end of the run
if not os.environ.get("GTMM_TEST_XLA_DEFAULT"):
    flags = os.environ.get("XLA_FLAGS", "").split()
    named = {f.split("=")[0] for f in flags}
    if LEVEL_0.split("=")[0] not in named:
        flags.append(LEVEL_0)
    if LOOP_EMITTERS.split("=")[0] not in named:
        # the xdist workers inherit the probe's answer instead of probing again
        if os.environ.get("GTMM_TEST_UNKNOWN_FLAGS") != LOOP_EMITTERS and _xla_knows(LOOP_EMITTERS):
            flags.append(LOOP_EMITTERS)
        else:
            _UNKNOWN.append(LOOP_EMITTERS)
            os.environ["GTMM_TEST_UNKNOWN_FLAGS"] = LOOP_EMITTERS
    os.environ["XLA_FLAGS"] = " ".join(flags)


# One persistent compile cache for the whole run, made by the first process (the workers and every
# process a test starts inherit it, gtmm's command line too) and removed by it at the end: a program
# one test compiled is read back by the others that compile it again, and the suite leaves nothing
# in the user's cache (the whole suite: 620 s and 1,051 CPU-s against 667 s and 1,119 without it,
# 2026-12-07). Tests of gtmm's own cache point GTMM_COMPILE_CACHE elsewhere.
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import tempfile

    _OWN_CACHE = tempfile.mkdtemp(prefix="gtmm-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["GTMM_COMPILE_CACHE"] = _OWN_CACHE
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # the suite's compiles are mostly sub-second


def pytest_report_header(config):
    return f"XLA_FLAGS: {os.environ.get('XLA_FLAGS') or '(none)'}"  # shown without -q


def pytest_terminal_summary(terminalreporter):
    """A suite slower after an XLA upgrade says why (shown with -q too)."""
    if _UNKNOWN:
        terminalreporter.write_line(f"tests/conftest.py: {' '.join(_UNKNOWN)} is unknown to this XLA, so the suite "
                                    "compiled without it (slower; results unchanged)", yellow=True)


@pytest.fixture(scope="session")
def mnist():
    from gtmm.data import load_mnist

    if not (SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz").exists():
        pytest.fail(f"the real MNIST test set is expected in {SHARED_DATA} (../shared/data beside the project)")
    return load_mnist(SHARED_DATA)


@pytest.fixture(scope="session")
def recall_task(mnist):
    from gtmm.tasks import make_task

    return make_task("perfect-recall", dataset=mnist, l=3, k=2)


@pytest.fixture(scope="session", autouse=True)
def shared_data_is_left_untouched():
    """Nothing gtmm does may write into the (shared, possibly read-only) data directory."""
    before = sorted(str(p) for p in SHARED_DATA.rglob("*"))
    yield
    assert sorted(str(p) for p in SHARED_DATA.rglob("*")) == before


@pytest.fixture(scope="session")
def omniglot():
    from gtmm.data import load_omniglot

    if not (SHARED_DATA / "omniglot" / "images_background_small1.zip").exists():
        pytest.fail(f"the Omniglot subsets are expected in {SHARED_DATA}/omniglot (../shared/data beside the project)")
    return load_omniglot(SHARED_DATA)


@pytest.fixture
def http_mirror(tmp_path):
    """A loopback HTTP server over a fresh directory: returns (directory, base URL); stopped after the test."""
    import functools
    import http.server
    import threading

    served = tmp_path / "mirror"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


@pytest.fixture(scope="session")
def episode_dataset():
    return fake_episode_dataset()


def pytest_sessionfinish(session, exitstatus):
    """Free the 3D renderer's GL context while EGL can still do it (see maze3d.release_renderers)."""
    import sys

    if "gtmm.data.maze3d" in sys.modules:
        sys.modules["gtmm.data.maze3d"].release_renderers()


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:  # only in the process that made it, after the workers have ended
        import shutil

        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
