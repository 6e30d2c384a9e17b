"""Units of the information quantities (KL, bounds, log-likelihoods).

gtmm computes and stores everything in nats (`evaluation.json`, `metrics.jsonl`); reports, plots
and printed summaries can show bits instead (SPEC section 5: "nats, bits on request").
"""

from __future__ import annotations

import math

from gtmm.errors import GtmmError

UNITS = {"nats": 1.0, "bits": 1.0 / math.log(2.0)}  # multiply a value in nats by this


def unit_scale(units: str) -> float:
    """The factor that turns a value in nats into `units` ("nats" or "bits")."""
    if units not in UNITS:
        raise GtmmError(f"unknown units {units!r}; choose one of: {', '.join(UNITS)}")
    return UNITS[units]


# evaluation.json's fields that are information quantities (the rest are counts, steps, accuracies)
EVALUATION_FIELDS = ("kl_per_step", "kl_per_step_stderr", "negative_bound", "kl_before_recall", "kl_recall",
                     "last_step_kl")


def evaluation_in(evaluation: dict, units: str) -> dict:
    """A copy of an evaluation (as `evaluate_run` returns it, in nats) with its KLs and bound in
    `units`, and a "units" entry naming them."""
    scale = unit_scale(units)
    out = dict(evaluation)
    for key in EVALUATION_FIELDS:
        if key in out:
            out[key] = [v * scale for v in out[key]] if isinstance(out[key], list) else out[key] * scale
    out["units"] = units
    return out
