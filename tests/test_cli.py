"""Bad input: one line naming the problem, exit code 2, no traceback, nothing overwritten."""

import subprocess
import sys

import pytest

from tests.conftest import SHARED_DATA


def gtmm(*args, env_data=None, cwd=None):
    import os

    env = dict(os.environ, GTMM_OFFLINE="1", GTMM_DATA=str(env_data or SHARED_DATA))
    return subprocess.run([sys.executable, "-m", "gtmm.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def assert_one_line_error(proc, *words):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("gtmm: error")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_argparse_errors_are_one_line():
    assert_one_line_error(gtmm("train", "--model"), "--model")
    assert_one_line_error(gtmm("evaluate", "x", "--batches", "0"), "positive")


def test_help_argument_errors_and_data_commands_import_no_jax():
    """The parser lists gtmm.catalog's names, so --help and a mistyped argument answer at once; the
    data commands compile nothing, so they do not import JAX either."""
    code = ("import sys\nfrom gtmm.cli import main\n"
            "for argv in (['--help'], ['train', '--help'], ['reproduce', '--help'], ['train', '--model'],"
            " ['data', 'where'], ['data', 'verify']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('imported jax:', 'jax' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines()[-1:] == ["imported jax: False"], proc.stdout + proc.stderr
    assert "perfect-recall-15" in proc.stdout and "dnc" in proc.stdout  # the catalog's names, in the help
    assert str(SHARED_DATA) in proc.stdout and "t10k-images-idx3-ubyte: ok" in proc.stdout  # the data commands ran


def test_the_catalog_names_what_the_registries_hold():
    from gtmm import catalog
    from gtmm.memories import MEMORIES, PLUGIN_GROUP
    from gtmm.tasks import TASKS

    assert list(MEMORIES)[:len(catalog.MODELS)] == list(catalog.MODELS)  # built-ins first; plugins may follow
    assert list(TASKS) == list(catalog.TASKS)
    assert {e["task"] for e in catalog.EXPERIMENTS.values()} == set(TASKS)
    assert set(catalog.ALIASES.values()) <= set(catalog.EXPERIMENTS) and PLUGIN_GROUP == "gtmm.memories"


def test_an_unknown_flag_points_to_its_commands_help(capsys):
    line = main_error(capsys, "fork", "run", "--from", "5", "--out", "x")
    assert "unrecognized arguments: --from 5" in line and "(see gtmm fork --help)" in line


@pytest.mark.parametrize("command", [("plot", "run"), ("reads", "run"), ("sample", "run"), ("draw", "perfect-recall")])
def test_a_figure_out_that_cannot_be_a_file(tmp_path, capsys, command):
    """A figure's --out that is a folder, or lies under a file: one line, before any run or data
    is read (the runs named here do not exist)."""
    assert "is a directory; --out takes a file name" in main_error(capsys, *command, "--out", str(tmp_path))
    (tmp_path / "notes.txt").write_text("mine")
    line = main_error(capsys, *command, "--out", str(tmp_path / "notes.txt" / "figure.png"))
    assert "notes.txt is a file, not a directory" in line
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_corrupt_data_directory(tmp_path, mnist):
    (tmp_path / "mnist").mkdir()
    for f in (SHARED_DATA / "mnist").iterdir():
        (tmp_path / "mnist" / f.name).write_bytes(f.read_bytes())
    bad = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:100])
    before = bad.read_bytes()
    proc = gtmm("train", "--model", "vrnn", "--steps", "1", "--out", str(tmp_path / "run"), env_data=tmp_path)
    assert_one_line_error(proc, "t10k-labels-idx1-ubyte", "corrupt")
    assert bad.read_bytes() == before
    assert not (tmp_path / "run").exists()
    assert_one_line_error(gtmm("data", "verify", env_data=tmp_path), "t10k-labels")


def test_not_a_run_directory(tmp_path, capsys):
    """evaluate, train and report on a folder of the user's: one line each, the folder untouched
    (the first from the real command line, the others in-process)."""
    (tmp_path / "notes.txt").write_text("mine")
    assert_one_line_error(gtmm("evaluate", str(tmp_path)), "not a gtmm run directory and holds none")
    train = ("train", "--model", "vrnn", "--steps", "1", "--out", str(tmp_path))
    assert "not a gtmm run directory" in main_error(capsys, *train)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert "not a gtmm run directory" in main_error(capsys, "report", str(tmp_path), "--out", str(tmp_path / "r"))
    assert "not a directory" in main_error(capsys, "report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("args,words", [
    (["perfect-recall", "--scale", "huge"], ["unknown scale", "huge"]),
    (["perfect-recall-99"], ["unknown experiment"]),
    (["perfect-recall", "--models", "vrnn,lstm"], ["unknown model", "lstm"]),
    (["perfect-recall", "--replicas", "0"], ["positive"]),
    (["perfect-recall", "--devices", "0"], ["positive"]),
    (["perfect-recall", "--devices", "9"], ["9 devices asked for", "xla_force_host_platform_device_count"]),
])
def test_bad_reproduce_arguments(tmp_path, capsys, args, words):
    """In-process (the console script's path is checked by the tests above that start one)."""
    out = tmp_path / "exp"
    line = main_error(capsys, "reproduce", *args, "--out", str(out))
    assert all(w in line for w in words), line
    assert not out.exists()


def test_info_prints_parameter_counts(capsys):
    from gtmm.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "vrnn" in out and "introspective" in out


def test_draw_writes_a_png_for_every_task(tmp_path, capsys, mnist, omniglot):
    from gtmm.cli import main
    from gtmm.tasks import TASKS

    drawn = [t for t in TASKS if t != "rotation-3d"]  # needs generated episodes: tests/test_rotation3d.py
    for task in drawn:
        out = tmp_path / f"{task}.png"
        assert main(["draw", task, "--sequences", "1", "--seed", "1", "--out", str(out)]) == 0
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5_000
        assert str(out) in capsys.readouterr().out
    assert main(["draw", "one-shot-recall", "--split", "eval", "--l", "6", "--k", "2", "--sequences", "1",
                 "--out", str(tmp_path / "eval.png")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{t}.png" for t in drawn] + ["eval.png"])
    # --task, as gtmm train spells it, draws the same sequences
    assert main(["draw", "--task", "mnist-maze", "--sequences", "1", "--seed", "1", "--out", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").read_bytes() == (tmp_path / "mnist-maze.png").read_bytes()


def main_error(capsys, *args) -> str:
    """`gtmm.cli.main` in-process (the console script's function): exit code 2, exactly one
    "gtmm: error" line and no traceback on stderr; returns that line."""
    from gtmm.cli import main

    try:
        code = main(list(args))
    except SystemExit as e:  # argparse's own errors exit, as they do from the console script
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("gtmm: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("args,words", [
    (["draw", "dynamic-dependency", "--l", "9"], ["l >= 10", "l = 9"]),
    (["draw", "similarity-cued-recall", "--l", "5", "--k", "5"], ["k < l"]),
    (["draw", "mnist-maze", "--grid", "1"], ["1x1 grid cannot hold a walk"]),
    (["draw", "perfect-recall", "--grid", "3"], ["takes no parameter grid"]),
    (["draw", "parity-recall", "--k", "0"], ["k must be a positive integer"]),
    (["draw"], ["needs a task", "mnist-maze"]),
    (["draw", "parity-recall", "--task", "mnist-maze"], ["two tasks given"]),
    (["train", "--model", "vrnn", "--task", "dynamic-dependency", "--l", "9"], ["l >= 10"]),
    (["train", "--model", "vrnn", "--seed", "-1"], ["seed must be an integer from 0 to 4294967295, got -1"]),
    (["train", "--model", "vrnn", "--seed", "4294967295", "--replicas", "2"], ["last replica's seed"]),
    (["train", "--model", "vrnn", "--checkpoint-every", "0"], ["checkpoint every must be a positive integer"]),
    (["train", "--model", "vrnn", "--lr", "-1"], ["learning rate must be a positive number"]),
    (["train", "--model", "vrnn", "--lr-drop", "300:1e-4", "--lr-drop", "200:1e-5"],
     ["lr drop steps must be positive and increasing, got [300, 200]"]),
    (["train", "--model", "ntm", "--word-size", "0"], ["word size must be positive"]),
    (["train", "--model", "lstm"], ["unknown model", "lstm"]),
    (["train", "--model", "vrnn", "--task", "copying"], ["unknown task", "copying"]),
    (["train", "--model", "vrnn", "--l", "3", "--k", "4"], ["k (4) must not exceed l (3)"]),
    (["train", "--model", "vrnn", "--steps", "0"], ["steps must be a positive integer"]),
    (["train", "--model", "vrnn", "--batch-size", "-2"], ["batch size must be a positive integer"]),
    (["train", "--model", "vrnn", "--hidden-size", "0"], ["hidden size must be positive"]),
    (["train", "--model", "dnc", "--read-heads", "0"], ["read heads must be positive"]),
    (["train", "--model", "lru", "--slots", "4"], ["slots (4) must be at least read heads (5)"]),
    (["train", "--model", "vrnn", "--keep-every", "0"], ["keep every must be a positive integer"]),
    (["train", "--model", "vrnn", "--keep-every", "150"], ["keep every (150) must be a multiple of checkpoint every (100)"]),
    (["train", "--model", "vrnn", "--lr-drop", "12000"], ["'12000' is not STEP:LR"]),
])
def test_bad_task_arguments(tmp_path, capsys, args, words):
    """In-process: the same path as the command line, without starting a new Python each time
    (test_argparse_errors_are_one_line and the data tests run the real command line)."""
    out = tmp_path / "out"
    line = main_error(capsys, *args, "--out", str(out))
    for w in words:
        assert w in line, line
    assert not out.exists()


@pytest.mark.parametrize("command", [("report", "run"), ("sweep", "--models", "vrnn"),
                                     ("data", "generate-3d", "--episodes", "1")])
def test_a_folder_out_under_a_file(tmp_path, capsys, command):
    """Found before any run is read, cluster started or frame rendered."""
    (tmp_path / "notes.txt").write_text("mine")
    line = main_error(capsys, *command, "--out", str(tmp_path / "notes.txt" / "x"))
    assert "notes.txt is a file, not a directory" in line
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_verify_with_missing_files(tmp_path, mnist, capsys, monkeypatch):
    """Missing files are not an error (the loaders download or fall back): exit 0, each named, and
    one line that says what happens to them."""
    from gtmm.cli import main

    (tmp_path / "mnist").mkdir()
    for f in (SHARED_DATA / "mnist").glob("t10k-*"):
        (tmp_path / "mnist" / f.name).write_bytes(f.read_bytes())
    monkeypatch.setenv("GTMM_DATA", str(tmp_path))
    assert main(["data", "verify"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "train-images-idx3-ubyte: missing" in out and "images_background.zip: missing" in out
    assert any(line.startswith("t10k-images-idx3-ubyte: ok") for line in out)
    assert out[-1].startswith("missing files are downloaded on first use") and str(tmp_path) in out[-1]


def test_corrupt_omniglot_archive(tmp_path, omniglot, capsys, monkeypatch):
    from gtmm.cli import main

    (tmp_path / "omniglot").mkdir()
    bad = tmp_path / "omniglot" / "images_background_small2.zip"
    bad.write_bytes((SHARED_DATA / "omniglot" / bad.name).read_bytes()[:-100])
    proc = gtmm("draw", "one-shot-recall", "--out", str(tmp_path / "x.png"), env_data=tmp_path)
    assert_one_line_error(proc, "images_background_small2.zip fails its checksum")
    assert not (tmp_path / "x.png").exists()
    monkeypatch.setenv("GTMM_DATA", str(tmp_path))
    assert main(["data", "verify"]) == 2
    err = capsys.readouterr().err
    assert "images_background_small2.zip fails its checksum" in err and "Traceback" not in err


def test_unwritable_output_directory(tmp_path, capsys, monkeypatch):
    """Found before any data is read: --out under a file, or where the user may not write."""
    import os

    (tmp_path / "file").write_text("mine")
    cases = [(tmp_path / "file" / "run", "is a file, not a directory; choose another --out"),
             (tmp_path / "denied" / "run", "permission denied); choose a writable --out")]
    (tmp_path / "denied").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: str(p) != str(tmp_path / "denied")
                        and real_access(p, mode, **kw))
    for out, words in cases:
        assert words in main_error(capsys, "train", "--model", "vrnn", "--steps", "1", "--out", str(out))
        assert not out.exists()
    assert (tmp_path / "file").read_text() == "mine" and not list((tmp_path / "denied").iterdir())


def test_unknown_option_is_one_line(capsys):
    from gtmm.cli import main

    with pytest.raises(SystemExit) as exit_:  # argparse exits itself, as the console script does
        main(["train", "--model", "vrnn", "--bogus", "1", "--out", "x"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gtmm: error: unrecognized arguments: --bogus 1"), err


def test_fork_prints_the_command_that_continues_it(tmp_path, capsys):
    """gtmm fork from the command line: the printed `continue` command resumes the fork from its
    step with the new clip; a bad --step is one line, exit 2, nothing written. In-process (the
    console script is `main`; test_argparse_errors_are_one_line runs the real one)."""
    import json
    import shlex

    from gtmm.cli import main

    run, fork = tmp_path / "run", tmp_path / "fork"
    tiny = ["--model", "vrnn", "--l", "3", "--k", "2", "--batch-size", "2", "--checkpoint-every", "2",
            "--hidden-size", "16", "--no-progress"]
    assert main(["train", *tiny, "--steps", "4", "--out", str(run)]) == 0
    assert "no checkpoint at step 3" in main_error(capsys, "fork", str(run), "--out", str(fork), "--step", "3")
    assert not fork.exists()
    line = main_error(capsys, "evaluate", str(run), "--step", "3")
    assert "no checkpoint at step 3" in line and "steps 2, 4" in line
    assert not (run / "evaluation-step-3.json").exists()
    capsys.readouterr()
    assert main(["fork", str(run), "--out", str(fork), "--step", "2", "--clip-grad-norm", "5", "--steps", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 2 and summary["changed"] == {"clip_grad_norm": [None, 5.0], "steps": [4, 3]}
    words = shlex.split(summary["continue"])
    assert words[:2] == ["gtmm", "train"] and "--clip-grad-norm" in words and "--hidden-size" in words
    assert main([*words[1:], "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["resumed_from"] == 2
    assert [json.loads(line)["step"] for line in (fork / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_train_command_carries_keep_every():
    from gtmm.cli import train_command
    from gtmm.train import TrainConfig

    words = train_command(TrainConfig(model="vrnn", keep_every=200), "runs/x").split()
    assert words[words.index("--keep-every") + 1] == "200"
    assert "--keep-every" not in train_command(TrainConfig(model="vrnn"), "runs/x").split()


def test_train_command_carries_the_maze_grid():
    from gtmm.cli import _parser, train_command
    from gtmm.train import TrainConfig

    words = train_command(TrainConfig(model="vrnn", task="mnist-maze", grid=3), "runs/x").split()
    assert _parser().parse_args(words[1:]).grid == 3
    assert "--grid" not in train_command(TrainConfig(model="vrnn"), "runs/x").split()


def test_train_command_carries_lr_drops():
    """The printed command parses back to the same learning-rate drops."""
    from gtmm.cli import _parser, train_command
    from gtmm.train import TrainConfig

    drops = ((12000, 3e-4), (20000, 1e-4))
    words = train_command(TrainConfig(model="lru", lr_drops=drops), "runs/x").split()
    assert words.count("--lr-drop") == 2
    assert tuple(_parser().parse_args(words[1:]).lr_drop) == drops

    clipped = train_command(TrainConfig(model="lru", clip_grad_norm=5000.0, clip_memory_grad_norm=200.0), "runs/x")
    args = _parser().parse_args(clipped.split()[1:])
    assert (args.clip_grad_norm, args.clip_memory_grad_norm) == (5000.0, 200.0)


def test_an_interrupt_says_what_it_leaves(capsys, monkeypatch):
    """Ctrl-C: exit 130 and one line; only the commands that train promise a resume."""
    import gtmm.cli
    from gtmm.cli import main

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(gtmm.cli, "_run", interrupted)
    assert main(["train", "--model", "vrnn", "--out", "run"]) == 130
    assert capsys.readouterr().err.strip() == ("gtmm: interrupted; the last checkpoint is kept and the run resumes"
                                               " with the same command")
    assert main(["evaluate", "run"]) == 130
    assert capsys.readouterr().err.strip() == "gtmm: interrupted; no file was left half-written"


def test_a_failing_disk_is_one_line(capsys, monkeypatch):
    """An OSError outside the checks made up front (a disk that fills while a report is written, say)."""
    import errno

    import gtmm.cli
    from gtmm.cli import main

    def disk_full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "runs/report/report.md")

    monkeypatch.setattr(gtmm.cli, "_run", disk_full)
    assert main(["report", "runs", "--out", "runs/report"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gtmm: error: No space left on device (runs/report/report.md)")


def test_every_argument_of_every_command_says_what_it_does():
    """`gtmm COMMAND --help` explains each argument (a bare flag left a newcomer guessing its default)."""
    import argparse

    from gtmm.cli import _parser

    bare = [f"{name} {' '.join(a.option_strings) or a.dest}" for name, sub in _parser().commands.items()
            for a in sub._actions if not a.help and not isinstance(a, argparse._HelpAction)]
    assert bare == []
