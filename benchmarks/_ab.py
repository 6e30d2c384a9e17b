"""Shared by the before/after benchmarks that swap a layer's implementation in one process."""

from __future__ import annotations

import equinox as eqx
import jax

from gtmm.train import make_train_step


def fresh_train_step(optimizer, *args):
    """The training step compiled ahead of time for `args`, traced with the code as it is now.

    Equinox caches a jitted closure by its code and closure contents, so a second
    `make_train_step(optimizer)` after a monkeypatch would reuse the first trace and time the
    same program twice: the caches are cleared first, and the compiled executable that is
    returned is the variant's own, which no later clearing or patching can change.
    """
    eqx.clear_caches()
    jax.clear_caches()
    return make_train_step(optimizer).lower(*args).compile()
