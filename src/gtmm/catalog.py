"""What the command line names without importing JAX, so that `gtmm --help` and a mistyped
argument answer at once: the built-in models and tasks, and the paper's experiments and scales.
The registries (`gtmm.memories.MEMORIES`, `gtmm.tasks.TASKS`) hold the classes; tests/test_cli.py
checks that these names are theirs."""

from __future__ import annotations

MODELS = ("vrnn", "introspective", "ntm", "lru", "dnc", "associative")
TASKS = ("perfect-recall", "parity-recall", "one-shot-recall", "dynamic-dependency", "similarity-cued-recall",
         "mnist-maze", "rotation-3d")
PLUGIN_GROUP = "gtmm.memories"  # entry-point group whose modules register memories when imported

# One entry per figure of the paper that this version can run.
EXPERIMENTS = {
    "perfect-recall-15": {"task": "perfect-recall", "l": 15, "k": 5, "figure": "Fig. 4, top row"},
    "perfect-recall-20": {"task": "perfect-recall", "l": 20, "k": 5, "figure": "Fig. 4, middle row"},
    "perfect-recall-50": {"task": "perfect-recall", "l": 50, "k": 5, "figure": "Fig. 4, bottom row"},
    "parity-recall-15": {"task": "parity-recall", "l": 15, "k": 5, "figure": "Fig. 6, top row"},
    "parity-recall-20": {"task": "parity-recall", "l": 20, "k": 5, "figure": "Fig. 6, middle row"},
    "parity-recall-50": {"task": "parity-recall", "l": 50, "k": 5, "figure": "Fig. 6, bottom row"},
    "one-shot-recall": {"task": "one-shot-recall", "l": 20, "k": 5, "figure": "Fig. 8"},
    "dynamic-dependency": {"task": "dynamic-dependency", "l": 20, "k": 5, "figure": "Fig. 10"},
    "similarity-cued-recall": {"task": "similarity-cued-recall", "l": 20, "k": 5, "figure": "Fig. 12"},
    # 25 steps (section 5.6); generation observes the first 13 (our choice, see gtmm.tasks.mnist_maze)
    "mnist-maze": {"task": "mnist-maze", "l": 13, "k": 12, "figure": "Fig. 14"},
    # 30 frames, two turns; generation observes the first (section 5.7). Needs the rendered cache
    # (gtmm data generate-3d); a 3D step of batch 10 is ~0.64-0.72 s on an idle 2-core CPU
    # (docs/results/speed.md, 2026-12-05), so the cpu scale takes ~40 min of training there.
    "rotation-3d": {"task": "rotation-3d", "l": 15, "k": 15, "figure": "Fig. 17"},
}
ALIASES = {"perfect-recall": "perfect-recall-15", "parity-recall": "parity-recall-15"}
# Per scale: training steps and batch per run, replicas per model, held-out batches (of 10) each
# run is evaluated on.
# - smoke: minutes, to try things out (the README's main job; batch halved to fit 6 models x 3
#   replicas in minutes on 2 cores).
# - cpu: about an hour per experiment on a 2-core machine (a step of batch 10, T = 20 takes
#   ~1.25 s there, docs/results/perfect-recall-15.md: 6 models x 3 replicas x 150 steps ~ 1 h).
#   Far too short to learn recall (docs/results/recall-diagnostic.md): it shows the pipeline at
#   the paper's batch, not the paper's effects.
# - cpu-long: 1,500 steps, ~9 h per experiment on 2 cores; `reproduce` resumes from checkpoints,
#   so it can be run over several sittings with the same command.
# - paper: the paper's batch and long runs (for a GPU; the paper ran 20 replicas).
SCALES = {
    "smoke": {"steps": 10, "batch_size": 5, "checkpoint_every": 10, "replicas": 3, "eval_batches": 2},
    "cpu": {"steps": 150, "batch_size": 10, "checkpoint_every": 50, "replicas": 3, "eval_batches": 10},
    "cpu-long": {"steps": 1500, "batch_size": 10, "checkpoint_every": 100, "replicas": 3, "eval_batches": 10},
    "paper": {"steps": 100_000, "batch_size": 10, "checkpoint_every": 1000, "replicas": 20, "eval_batches": 10},
}
