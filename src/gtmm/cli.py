"""The `gtmm` command line: a thin layer over functions a notebook can call."""

from __future__ import annotations

import argparse
import json
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        self.exit(2, f"gtmm: error: {message} (see gtmm {self.prog.split()[-1]} --help)\n"
                  if " " in self.prog else f"gtmm: error: {message} (see gtmm --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def parse_lr_drop(text: str) -> tuple[int, float]:
    """"12000:3e-4" -> (12000, 3e-4), as `--lr-drop` and sweeps write one drop; ValueError if not."""
    step, _, lr = text.partition(":")
    return int(step), float(lr)


def _lr_drop(text: str) -> tuple[int, float]:
    try:
        return parse_lr_drop(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not STEP:LR (e.g. 12000:3e-4)") from None


_L_HELP = ("length of the random sequence (pre-recall interval); mnist-maze: steps observed before generation;"
           " default: the task's (perfect/parity recall 15, mnist-maze 13, others 20)")
_K_HELP = "length of the recall interval; mnist-maze: steps generated (walk length l + k); default: 5 (mnist-maze 12)"


def _model_names() -> list[str]:
    """The models to list: the built-in ones, without importing JAX, unless a package registers
    memories of its own (whose modules are then imported: they register on import) or the
    registry is already loaded (a notebook's `register_memory` counts too)."""
    from importlib.metadata import entry_points

    from gtmm.catalog import MODELS, PLUGIN_GROUP

    if not entry_points(group=PLUGIN_GROUP) and "gtmm.memories" not in sys.modules:
        return list(MODELS)
    from gtmm.memories import MEMORIES, load_plugins

    load_plugins()
    return list(MEMORIES)


def _parser() -> argparse.ArgumentParser:
    # names only (gtmm.catalog): building the parser imports no JAX, so --help and argument errors are instant
    from gtmm.catalog import EXPERIMENTS, SCALES, TASKS

    models = _model_names()
    p = _Parser(prog="gtmm", description="Generative temporal models with memory.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def model_and_task(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--model", required=True, help=f"one of {', '.join(models)}")
        parser.add_argument("--task", default="perfect-recall", help=f"one of {', '.join(TASKS)}")
        parser.add_argument("--l", type=int, default=None, help=_L_HELP)
        parser.add_argument("--k", type=int, default=None, help=_K_HELP)
        parser.add_argument("--grid", type=int, default=None, help="mnist-maze: the grid's side (default 4)")
        parser.add_argument("--batch-size", type=int, default=10, help="sequences per training step (default 10)")
        parser.add_argument("--seed", type=int, default=0,
                            help="initial parameters, data stream and noise (default 0; replica r of --replicas"
                                 " gets S + r)")

    t = sub.add_parser("train", help="train a model on a task (resumes when --out holds the same run)")
    model_and_task(t)
    t.add_argument("--steps", type=int, default=1000,
                   help="training steps in all (default 1000); a resume with more goes on to them")
    t.add_argument("--lr", type=float, default=None, help="default 1e-3, 1e-4 when T > 100")
    t.add_argument("--lr-drop", type=_lr_drop, action="append", default=[], metavar="STEP:LR",
                   help="train the steps after STEP at LR (repeat for more; not in the paper): the same as training"
                        " to STEP and forking with --lr LR")
    t.add_argument("--clip-grad-norm", type=float, default=None,
                   help="clip the gradient's global norm to this before Adam (default: none, as the paper; see"
                        " docs/results/recall-diagnostic.md)")
    t.add_argument("--clip-memory-grad-norm", type=float, default=None,
                   help="also clip the memory's gradient (controller and interface) alone to this norm (default: none;"
                        " not in the paper; see docs/results/recall-diagnostic.md)")
    t.add_argument("--checkpoint-every", type=int, default=100,
                   help="save a checkpoint every N steps (default 100): what a killed run loses at most")
    t.add_argument("--keep-every", type=int, default=None,
                   help="also keep every checkpoint at a multiple of N steps (default: only the last 3), to evaluate"
                        " or fork the run there later; a resume keeps the run's N")
    t.add_argument("--hidden-size", type=int, default=None, help="controller LSTM width (default: per model)")
    t.add_argument("--slots", type=int, default=None, help="memory slots (default: T; 5 T for lru)")
    t.add_argument("--read-heads", type=int, default=None, help="read heads R (default: 5)")
    t.add_argument("--word-size", type=int, default=None, help="memory word width (default: the latent size)")
    t.add_argument("--top-k", type=int, default=None,
                   help="sparse content reads: only the k most similar slots get weight (ntm, lru, dnc, associative)")
    t.add_argument("--link-k", type=int, default=None,
                   help="sparse temporal link: keep K links per slot instead of slots x slots (dnc)")
    t.add_argument("--content-index", choices=["lsh"], default=None,
                   help="associative: read by content through a hash index, k (slot, weight) pairs per head, so a"
                        " step's cost does not grow with the slots (needs --top-k; drops the position mode)")
    t.add_argument("--context-with-controller", action="store_true",
                   help="introspective: the memory context also carries the controller state h_t (not the"
                        " paper's eq. 12; see docs/results/recall-diagnostic.md)")
    t.add_argument("--min-std", type=float, default=None,
                   help="floor on the prior's and posterior's standard deviations (default 1e-3)")
    t.add_argument("--ntm-walk-bias", type=float, default=None,
                   help="ntm: start the write heads walking forward one slot per step (interface biases: gate -B,"
                        " shift +1 logit B; 3 is a good value; not in the paper, see docs/results/recall-diagnostic.md)")
    t.add_argument("--remat-chunk", type=int, default=None,
                   help="gradient checkpointing: keep the recurrent state every N steps and recompute between"
                        " (for long sequences; N about sqrt(T))")
    t.add_argument("--replicas", type=_positive_int, default=1,
                   help="train N independent replicas (seeds S..S+N-1) together, into OUT/replica-r")
    t.add_argument("--replica-strategy", choices=["auto", "vmap", "loop"], default="auto",
                   help="vmap: one vectorised step; loop: one after another; auto: vmap on GPU, loop on CPU")
    t.add_argument("--devices", type=_devices, default=None,
                   help="split each batch over N devices (or 'all'), parameters replicated (data parallel);"
                        " default one device, or all of them when several processes join")
    t.add_argument("--coordinator", default=None,
                   help="HOST:PORT of process 0, to train as one of several processes (hosts) with jax.distributed;"
                        " default $GTMM_COORDINATOR")
    t.add_argument("--num-processes", type=_positive_int, default=None,
                   help="processes in all (default $GTMM_NUM_PROCESSES, or from Slurm/Open MPI)")
    t.add_argument("--process-id", type=int, default=None, help="this process, 0..N-1 (default $GTMM_PROCESS_ID)")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out even if its settings differ (default: resume the same run, refuse"
                        " another)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (logs, batch jobs)")

    f = sub.add_parser("fork", help="branch a run from one of its checkpoints into a new run directory, with another"
                                    " clip, learning rate or step count; then gtmm train goes on from there")
    f.add_argument("run_dir", help="the run to branch from (left unchanged)")
    f.add_argument("--out", required=True, help="the new run directory (must not exist)")
    f.add_argument("--step", type=_positive_int, default=None, help="the checkpoint to start from (default: newest)")
    f.add_argument("--steps", type=_positive_int, default=None, help="steps the new run trains to (default: the source's)")
    f.add_argument("--lr", type=float, default=None, help="the new run's learning rate (default: the source's)")
    clip = f.add_mutually_exclusive_group()
    clip.add_argument("--clip-grad-norm", type=float, default=None, help="the new run's clip (default: the source's)")
    clip.add_argument("--no-clip", action="store_true", help="the new run does not clip the gradient")
    clip_memory = f.add_mutually_exclusive_group()
    clip_memory.add_argument("--clip-memory-grad-norm", type=float, default=None,
                             help="the new run's clip of the memory's gradient (default: the source's)")
    clip_memory.add_argument("--no-clip-memory", action="store_true",
                             help="the new run does not clip the memory's gradient apart")

    e = sub.add_parser("evaluate", help="KL at every step on held-out sequences; writes evaluation.json")
    e.add_argument("run_dirs", nargs="+", metavar="run_dir",
                   help="run directories, or folders that hold them (every run below, as gtmm report); one JSON"
                        " line each")
    e.add_argument("--batches", type=_positive_int, default=10,
                   help="held-out batches of 10 sequences to evaluate on (default 10)")
    e.add_argument("--step", type=_positive_int, default=None,
                   help="evaluate the checkpoint of this step into evaluation-step-N.json (default: the newest,"
                        " into evaluation.json)")
    _units_flag(e, "what the printed summary shows (evaluation.json stays in nats)")

    s = sub.add_parser("sample", help="PNG grid of inputs, reconstructions and generations")
    s.add_argument("run_dir", help="a run directory")
    s.add_argument("--sequences", type=_positive_int, default=4, help="held-out sequences, three rows each (default 4)")
    s.add_argument("--step", type=_positive_int, default=None, help="a kept checkpoint (default: the newest)")
    s.add_argument("--out", default=None, help="PNG file (default: RUN_DIR/samples.png)")

    rd = sub.add_parser("reads", help="PNG of where each read head of a run's memory looks at every step of a"
                                      " held-out sequence")
    rd.add_argument("run_dir", help="a run directory of a model with memory slots")
    rd.add_argument("--sequence", type=int, default=0, help="which sequence of the evaluation's first batch (0-9)")
    rd.add_argument("--step", type=_positive_int, default=None, help="a kept checkpoint (default: the newest)")
    rd.add_argument("--out", required=True, help="PNG file")

    pl = sub.add_parser("plot", help="the paper's three metrics of evaluated runs, models side by side (Fig. 4);"
                                     " where a run is not evaluated yet, the two training curves alone")
    pl.add_argument("run_dirs", nargs="+", help="run directories, or folders that hold them (as gtmm report)")
    pl.add_argument("--out", required=True, help="PNG file")
    _units_flag(pl, "the figures' units")

    rp = sub.add_parser("report", help="Markdown report with PNGs over run directories (evaluates them if needed)")
    rp.add_argument("run_dirs", nargs="+", help="run directories, or folders that hold them (searched below)")
    rp.add_argument("--out", required=True, help="report directory (report.md and its PNGs)")
    rp.add_argument("--title", default="", help="the report's heading (default: gtmm report)")
    rp.add_argument("--batches", type=_positive_int, default=10, help="held-out batches of 10 to evaluate on")
    rp.add_argument("--no-progress", action="store_true", help="no progress bar")
    _units_flag(rp, "what the tables and figures show (the runs' files stay in nats)")

    r = sub.add_parser("reproduce", help="run a paper experiment for every model: train replicas, evaluate, report")
    r.add_argument("experiment", help=f"one of {', '.join(EXPERIMENTS)} (perfect-recall = perfect-recall-15)")
    r.add_argument("--scale", default="smoke",
                   help=f"one of {', '.join(SCALES)}: " + "; ".join(
                       f"{n} {v['steps']} steps, batch {v['batch_size']}, {v['replicas']} replicas"
                       for n, v in SCALES.items()))
    r.add_argument("--replicas", type=_positive_int, default=None, help="replicas per model (default: the scale's)")
    r.add_argument("--models", default=",".join(models), help="comma-separated subset of the models")
    r.add_argument("--seed", type=int, default=0, help="replica r gets seed S + r (default 0)")
    r.add_argument("--devices", type=_devices, default=None,
                   help="split each batch over N devices (or 'all'), as gtmm train; on a CPU with"
                        " XLA_FLAGS=--xla_force_host_platform_device_count=N")
    r.add_argument("--out", required=True, help="experiment directory: OUT/MODEL/replica-R and OUT/report.md")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    _units_flag(r, "what the report shows (the runs' files stay in nats)")

    sw = sub.add_parser("sweep", help="a grid of runs (models x tasks x settings x replicas) on a Ray cluster, then"
                                      " a report; needs the sweep extra")
    sw.add_argument("grid", nargs="?", default=None,
                    help="TOML or JSON file with models, tasks, replicas, seed, settings (flags override it)")
    sw.add_argument("--models", default=None, help="comma-separated models")
    sw.add_argument("--tasks", default=None, help="comma-separated tasks (default perfect-recall)")
    sw.add_argument("--replicas", type=_positive_int, default=None, help="replicas per grid point (default 1)")
    sw.add_argument("--seed", type=int, default=None, help="replica r gets seed S + r (default 0)")
    sw.add_argument("--set", action="append", default=[], metavar="NAME=V1[,V2...]",
                    help="a setting and its values, e.g. --set lr=1e-3,1e-4 --set steps=500 --set hidden-size=64;"
                         " repeatable")
    sw.add_argument("--out", required=True, help="sweep directory: OUT/TASK/MODEL/SETTINGS/replica-R, OUT/report/")
    sw.add_argument("--address", default=None,
                    help="Ray cluster to join (e.g. auto, or HOST:6379); default: start one on this machine")
    sw.add_argument("--cpus", type=_positive_int, default=None, help="local cluster: CPUs to use (default: all)")
    sw.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray CPUs each run reserves (default 1)")
    sw.add_argument("--gpus-per-run", type=float, default=0.0, help="Ray GPUs each run reserves (default 0)")
    sw.add_argument("--max-retries", type=int, default=3, help="times Ray re-runs a run whose worker died")
    sw.add_argument("--eval-batches", type=_positive_int, default=10, help="held-out batches of 10 per run")
    _units_flag(sw, "what the report shows (the runs' files stay in nats)")

    i = sub.add_parser("info", help="parameter count of every model")
    i.add_argument("--l", type=int, default=None, help="default 15 (with --task: the task's)")
    i.add_argument("--k", type=int, default=None, help="default 5 (with --task: the task's)")
    i.add_argument("--task", default=None,
                   help="size the models for this task's networks (rotation-3d: appendix B.2, T = 30)")

    b = sub.add_parser("bench", help="time the training step; prints one JSON line")
    model_and_task(b)
    b.add_argument("--steps", type=_positive_int, default=5, help="timed steps after the first")
    b.add_argument("--devices", type=_devices, default=None, help="split the batch over N devices (or 'all')")
    b.add_argument("--no-ceiling", dest="ceiling", action="store_false",
                   help="skip measuring the matrix-product ceiling (float32 products, 2048^3 on a CPU, 8192^3 on an"
                        " accelerator)")
    b.add_argument("--warm-cache", action="store_true",
                   help="also time the first step in a second process that finds the compile cache warm")

    dr = sub.add_parser("draw", help="PNG of example sequences of a task, as the paper's Fig. 3, 5, 7, 9, 11, 13")
    dr.add_argument("task", nargs="?", default=None, help=f"one of {', '.join(TASKS)}")
    dr.add_argument("--task", dest="task_flag", default=None, metavar="TASK",
                    help="the same, as gtmm train spells it: gtmm draw --task mnist-maze")
    dr.add_argument("--l", type=int, default=None, help=_L_HELP)
    dr.add_argument("--k", type=int, default=None, help=_K_HELP)
    dr.add_argument("--grid", type=int, default=None, help="mnist-maze: the grid's side (default 4)")
    dr.add_argument("--sequences", type=_positive_int, default=3, help="sequences drawn, one row each (default 3)")
    dr.add_argument("--seed", type=int, default=0, help="which sequences (default 0)")
    dr.add_argument("--split", choices=["train", "eval"], default="train",
                   help="draw from the training or held-out images (default train)")
    dr.add_argument("--out", required=True, help="PNG file")

    d = sub.add_parser("data", help="where data lives, verify it, download it ahead of time, and render the"
                                    " rotation-3d episodes")
    d.add_argument("action", choices=["where", "verify", "download", "generate-3d", "make-3d"],
                   help="download: fetch the missing MNIST files and Omniglot archives into DATA now (for a machine"
                        " that will train offline); generate-3d (or make-3d): render rotation-3d episodes into"
                        " DATA/rotation-3d (needs the 3d extra); continues an interrupted generation")
    d.add_argument("--only", choices=["mnist", "omniglot"], default=None, help="download: one data set (default: both)")
    d.add_argument("--episodes", type=_positive_int, default=1000, help="generate-3d: episodes in all")
    d.add_argument("--seed", type=int, default=0, help="generate-3d: episode i is rendered from (seed, i)")
    d.add_argument("--out", default=None, help="generate-3d: folder (default: DATA/rotation-3d)")
    d.add_argument("--no-progress", action="store_true", help="generate-3d: no progress bar")
    p.commands = sub.choices  # for errors found after parsing, named by their command (main)
    return p


# `gtmm train`'s model settings (ModelConfig fields, the flag's name with dashes); a bool is a switch.
_MODEL_FLAGS = ("hidden_size", "slots", "read_heads", "word_size", "top_k", "link_k", "content_index", "remat_chunk", "min_std",
                "ntm_walk_bias", "context_with_controller")


def train_command(config, out: str) -> str | None:
    """The `gtmm train` command line that trains (or resumes) `config` into `out`; None when a model
    setting has no flag (a run made from Python)."""
    words = ["gtmm", "train", *config.model_and_task_flags(), "--steps", str(config.steps),
             "--checkpoint-every", str(config.checkpoint_every)]
    if config.keep_every is not None:
        words += ["--keep-every", str(config.keep_every)]
    for flag, value in (("lr", config.learning_rate), ("clip-grad-norm", config.clip_grad_norm),
                        ("clip-memory-grad-norm", config.clip_memory_grad_norm)):
        if value is not None:
            words += [f"--{flag}", repr(value)]
    for step, lr in config.lr_drops:
        words += ["--lr-drop", f"{step}:{lr!r}"]
    for name, value in config.model_overrides.items():
        if name not in _MODEL_FLAGS:
            return None
        words += [f"--{name.replace('_', '-')}"] + ([] if value is True else [repr(value)])
    return " ".join(words + ["--out", out])


def _units_flag(parser, what: str) -> None:
    from gtmm.units import UNITS

    parser.add_argument("--units", choices=list(UNITS), default="nats", help=f"nats (default) or bits: {what}")


def _devices(text: str) -> int | str:
    return "all" if text == "all" else _positive_int(text)


def _run(args) -> int:
    from gtmm._io import check_output_file

    if args.command == "train":
        from gtmm.parallel import init_distributed

        init_distributed(args.coordinator, args.num_processes, args.process_id)  # before anything uses a device
        from gtmm.train import TrainConfig, train, train_replicas

        overrides = {k: v for k in _MODEL_FLAGS if (v := getattr(args, k)) is not None and v is not False}
        config = TrainConfig(model=args.model, task=args.task, l=args.l, k=args.k, grid=args.grid, steps=args.steps,
                             batch_size=args.batch_size, learning_rate=args.lr, lr_drops=tuple(args.lr_drop),
                             clip_grad_norm=args.clip_grad_norm, clip_memory_grad_norm=args.clip_memory_grad_norm,
                             seed=args.seed, checkpoint_every=args.checkpoint_every, keep_every=args.keep_every,
                             model_overrides=overrides).validate()
        if args.replicas == 1:
            print(json.dumps(train(config, args.out, progress=not args.no_progress, overwrite=args.overwrite,
                                   devices=args.devices)))
        else:
            for summary in train_replicas(config, args.out, args.replicas, progress=not args.no_progress,
                                          strategy=args.replica_strategy, overwrite=args.overwrite,
                                          devices=args.devices):
                print(json.dumps(summary))
    elif args.command == "fork":
        from gtmm.train import fork_run, read_config

        changes = {k: v for k, v in (("steps", args.steps), ("learning_rate", args.lr),
                                     ("clip_grad_norm", args.clip_grad_norm),
                                     ("clip_memory_grad_norm", args.clip_memory_grad_norm)) if v is not None}
        if args.no_clip:
            changes["clip_grad_norm"] = None
        if args.no_clip_memory:
            changes["clip_memory_grad_norm"] = None
        summary = fork_run(args.run_dir, args.out, args.step, **changes)
        summary["continue"] = (train_command(read_config(args.out), args.out)
                               or f"from Python, gtmm.train.train(read_config({args.out!r}), {args.out!r}): a model setting of"
                                  " this run has no gtmm train flag")
        print(json.dumps(summary))
    elif args.command == "evaluate":
        from gtmm.evaluate import evaluate_run
        from gtmm.units import evaluation_in

        from gtmm.report import find_runs

        for run in find_runs(args.run_dirs):
            ev = evaluation_in(evaluate_run(run, args.batches, step=args.step), args.units)
            print(json.dumps({"run_dir": str(run), **{k: v for k, v in ev.items() if not k.startswith("kl_per_step")}}),
                  flush=True)
    elif args.command == "sample":
        from gtmm.evaluate import sample_run

        if args.out is not None:
            check_output_file(args.out)
        print(sample_run(args.run_dir, args.sequences, out=args.out, step=args.step))
    elif args.command == "reads":
        from gtmm.evaluate import plot_reads

        check_output_file(args.out)
        print(plot_reads(args.run_dir, args.out, sequence=args.sequence, step=args.step))
    elif args.command == "plot":
        from gtmm.plots import plot_three_metrics
        from gtmm.report import find_runs

        check_output_file(args.out)
        print(plot_three_metrics(find_runs(args.run_dirs), args.out, units=args.units))
    elif args.command == "report":
        from gtmm.report import write_report

        command = ("gtmm report " + " ".join(args.run_dirs) + (f" --units {args.units}" if args.units != "nats" else "")
                   + f" --out {args.out}")
        report = write_report(args.run_dirs, args.out, title=args.title, batches=args.batches, command=command,
                              progress=not args.no_progress, units=args.units)
        print(f"report: {report}")
    elif args.command == "reproduce":
        from gtmm.experiments import reproduce

        models = tuple(m.strip() for m in args.models.split(",") if m.strip())
        summary = reproduce(args.experiment, args.scale, args.out, seed=args.seed, progress=not args.no_progress,
                            replicas=args.replicas, models=models, devices=args.devices, units=args.units)
        print(f"report: {summary}")
    elif args.command == "sweep":
        return _sweep(args)
    elif args.command == "info":
        import equinox as eqx
        import jax

        from gtmm.memories import MEMORIES
        from gtmm.model import GTMM, ModelConfig, count_parameters
        from gtmm.tasks import TASKS, task_params
        from gtmm.tasks.perfect_recall import PerfectRecall

        if args.task is None:
            l, k = PerfectRecall.check_params(15 if args.l is None else args.l, 5 if args.k is None else args.k)
            defaults = {}
        else:
            params = task_params(args.task, l=args.l, k=args.k)
            l, k = params["l"], params["k"]
            defaults = getattr(TASKS[args.task], "model_defaults", {})
            if defaults:
                print(f"{args.task}: networks {defaults.get('network')}, latent {defaults.get('latent_size')}")
        variants = [(name, {}, "") for name in MEMORIES]
        variants.append(("introspective", {"context_with_controller": True}, ", with --context-with-controller"))
        width = max(14, *(len(name) for name, _, _ in variants))
        for name, options, note in variants:
            cfg = ModelConfig(name, l + k, **options, **defaults).resolved()
            n = count_parameters(eqx.filter_eval_shape(GTMM, cfg, key=jax.random.PRNGKey(0)))
            slots = f", {cfg.slots} slots of {cfg.word_size}" if cfg.word_size else ""
            print(f"{name:{width}s} {n:>10,d} parameters (LSTM {cfg.hidden_size}{slots}, T={l + k}{note})")
    elif args.command == "bench":
        from gtmm.bench import bench
        from gtmm.train import TrainConfig

        config = TrainConfig(model=args.model, task=args.task, l=args.l, k=args.k, grid=args.grid, steps=1,
                             batch_size=args.batch_size, seed=args.seed)
        print(json.dumps(bench(config, args.steps, devices=args.devices, ceiling=args.ceiling,
                               warm_cache=args.warm_cache)))
    elif args.command == "draw":
        from gtmm.errors import GtmmError
        from gtmm.plots import draw_task_examples
        from gtmm.tasks import TASKS, make_task

        if args.task and args.task_flag and args.task != args.task_flag:
            raise GtmmError(f"two tasks given, {args.task} and --task {args.task_flag}; give one")
        if not (args.task or args.task_flag):
            raise GtmmError(f"gtmm draw needs a task: gtmm draw TASK --out FILE, TASK one of {', '.join(TASKS)}")
        check_output_file(args.out)
        task = make_task(args.task or args.task_flag, l=args.l, k=args.k, grid=args.grid)
        print(draw_task_examples(task, args.out, sequences=args.sequences, seed=args.seed, split=args.split))
    elif args.command == "data":
        from gtmm.data import data_dir, verify_mnist, verify_omniglot

        if args.action == "where":
            print(data_dir())
        elif args.action in ("generate-3d", "make-3d"):  # make-3d: the name SPEC section 6 gives it
            from gtmm.data.rotation3d import generate

            try:
                print(json.dumps(generate(args.episodes, root=args.out, seed=args.seed,
                                          progress=not args.no_progress)))
            except KeyboardInterrupt:
                print("gtmm: interrupted; the finished shards are kept and the same command continues",
                      file=sys.stderr)
                return 130
        elif args.action == "download":
            from gtmm.data import download_mnist, download_omniglot
            from gtmm.errors import GtmmError

            report = {**(download_mnist() if args.only in (None, "mnist") else {}),
                      **(download_omniglot() if args.only in (None, "omniglot") else {})}
            for name, status in report.items():
                print(f"{name}: {status}")
            failed = [name for name, status in report.items() if status == "failed"]
            if failed:
                raise GtmmError(f"could not download {', '.join(failed)} (no network, or no mirror served a file that"
                                f" passes its checksum); the files present are kept: retry online, or put them in"
                                f" {data_dir()} by hand")
        else:
            survey = {**verify_mnist(), **verify_omniglot()}
            for name, status in survey.items():
                print(f"{name}: {status}")
            if "missing" in survey.values():  # not an error: the loaders download or fall back
                print(f"missing files are downloaded on first use when a network exists (`gtmm data download`"
                      f" fetches them now); offline, gtmm falls back to what is in {data_dir()} and says so"
                      f" (README, Data)")
    return 0


def _sweep(args) -> int:
    from gtmm.sweep import expand_grid, parse_setting, read_grid, sweep

    grid = read_grid(args.grid) if args.grid else {}
    listed = lambda text: [x.strip() for x in text.split(",") if x.strip()]  # noqa: E731
    settings = dict(grid.get("settings", {}))
    settings.update(parse_setting(s) for s in args.set)
    runs = expand_grid(listed(args.models) if args.models else grid.get("models", []),
                       listed(args.tasks) if args.tasks else grid.get("tasks", ["perfect-recall"]),
                       args.replicas or grid.get("replicas", 1), settings,
                       seed=args.seed if args.seed is not None else grid.get("seed", 0))
    print(f"sweep: {len(runs)} runs into {args.out}", flush=True)
    summary = sweep(runs, args.out, address=args.address, max_retries=args.max_retries,
                    eval_batches=args.eval_batches, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                    num_cpus=args.cpus, command=args.command_line, units=args.units)
    for run in summary["runs"]:
        if run["status"] != "finished":
            print(f"failed: {run['run']}: {run['error']}")
    print(f"{summary['finished']} of {len(runs)} runs finished in {summary['seconds']} s;"
          f" report: {summary['report'] or 'none (no run finished)'}")
    return 0 if not summary["failed"] else 1


def main(argv: list[str] | None = None) -> int:
    from gtmm.errors import GtmmError

    args = None
    try:
        parser = _parser()  # loads the plugins' memories, if any, whose names its help lists
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # as parse_args would, but pointing to the command's own --help
            parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
        args.command_line = "gtmm " + " ".join(sys.argv[1:] if argv is None else argv)
        if args.command != "data":  # data commands compile nothing: they answer without importing JAX
            from gtmm.train import enable_compile_cache

            enable_compile_cache()
        return _run(args)
    except GtmmError as e:
        print(f"gtmm: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the disk or the file system (full, read-only, gone): one line, as for bad input
        where = f" ({e.filename})" if e.filename else ""
        print(f"gtmm: error: {e.strerror or e}{where}; check the path and the disk, then run the same command again",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        trains = args is not None and args.command in ("train", "reproduce", "sweep")
        print("gtmm: interrupted" + ("; the last checkpoint is kept and the run resumes with the same command"
                                     if trains else "; no file was left half-written"), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
