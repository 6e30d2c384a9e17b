"""train -> evaluate -> sample -> plot -> report, as the README's main job runs it, on tiny runs."""

import ast
import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest

from gtmm.errors import GtmmError
from gtmm.evaluate import evaluate_run, sample_run
from gtmm.plots import plot_kl_per_step, plot_three_metrics
from gtmm.report import write_report
from gtmm.train import TrainConfig, train_replicas


@pytest.fixture(scope="module")
def replica_runs(tmp_path_factory, recall_task):
    """2 replicas of 2 steps for two models, trained once for this module (compiles dominate)."""
    runs = tmp_path_factory.mktemp("pipeline") / "runs"
    for model in ("vrnn", "introspective"):
        train_replicas(TrainConfig(model=model, l=3, k=2, steps=2, batch_size=2), runs / model, 2,
                       progress=False, task=recall_task)
    return runs


def test_evaluate_sample_and_plot(tmp_path, replica_runs):
    runs = [replica_runs / model / "replica-1" for model in ("vrnn", "introspective")]
    for run in runs:
        ev = evaluate_run(run, batches=1)
        assert ev["step"] == 2 and len(ev["kl_per_step"]) == 5
        assert all(np.isfinite(ev["kl_per_step"])) and np.isfinite(ev["negative_bound"])
        assert 0 <= ev["generation_accuracy"] <= 1 and ev["generation_scored"] == 20  # 10 sequences x k
        assert json.loads((run / "evaluation.json").read_text())["kl_recall"] == ev["kl_recall"]
        png = sample_run(run, sequences=2)
        assert png == run / "samples.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # elsewhere, and from a named checkpoint: the same grid (evaluation's fixed batch and key)
    assert sample_run(run, sequences=2, out=tmp_path / "s" / "two.png", step=2).read_bytes() == png.read_bytes()
    with pytest.raises(GtmmError, match="no checkpoint at step 1"):
        sample_run(run, sequences=2, out=tmp_path / "one.png", step=1)
    assert plot_kl_per_step(runs, tmp_path / "kl.png").stat().st_size > 5000
    assert plot_three_metrics(runs, tmp_path / "three.png").stat().st_size > 10000


def test_report_over_replicas(tmp_path, replica_runs):
    runs = replica_runs
    report = write_report([runs], tmp_path / "report", batches=1, progress=False)
    text = report.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| vrnn") or line.startswith("| introspective")]
    assert len(rows) == 2 and all("| 2 | 2 |" in r and "±" in r for r in rows)  # 2 runs of 2 steps, mean ± s.e.
    pngs = sorted(p.name for p in report.parent.glob("*.png"))
    assert pngs == ["perfect-recall-l3-k2-introspective-samples.png", "perfect-recall-l3-k2-metrics.png",
                    "perfect-recall-l3-k2-vrnn-samples.png"]
    for name in pngs:
        assert f"]({name})" in text
    before = (runs / "vrnn" / "replica-0" / "evaluation.json").read_bytes()
    write_report([runs / "vrnn" / "replica-0"], tmp_path / "report")  # rewrites its own report; no re-evaluation
    assert (runs / "vrnn" / "replica-0" / "evaluation.json").read_bytes() == before


def test_report_refuses_to_overwrite_foreign_files(tmp_path, replica_runs):
    run = replica_runs / "vrnn" / "replica-0"
    out = tmp_path / "notes"
    out.mkdir()
    (out / "report.md").write_text("my notes")
    with pytest.raises(GtmmError, match="not written by gtmm report"):
        write_report([run], out, batches=1)
    assert (out / "report.md").read_text() == "my notes"
    with pytest.raises(GtmmError, match="not a gtmm run directory and holds none"):
        write_report([out], tmp_path / "r2")


def test_report_and_plots_in_bits(tmp_path, replica_runs):
    """--units bits: every KL and bound in the report's table is its value in nats over ln 2; the
    runs' own files stay in nats; an unknown unit is an error before anything is evaluated."""
    import math

    from gtmm.units import evaluation_in

    def table(report):
        rows = [line.split("|")[1:-1] for line in report.read_text().splitlines() if line.startswith("| vrnn")]
        return [float(cell.split("±")[0]) for cell in rows[0][3:7]]  # bound, KL before, KL recall, last-step KL

    nats = write_report([replica_runs], tmp_path / "nats", batches=1, progress=False)
    before = (replica_runs / "vrnn" / "replica-0" / "evaluation.json").read_bytes()
    bits = write_report([replica_runs], tmp_path / "bits", batches=1, progress=False, units="bits")
    assert "KL and bounds in bits" in bits.read_text() and "KL and bounds in nats" in nats.read_text()
    assert np.allclose(table(bits), [v / math.log(2) for v in table(nats)], rtol=2e-3, atol=0.006)  # 2 decimals
    assert (replica_runs / "vrnn" / "replica-0" / "evaluation.json").read_bytes() == before
    assert plot_kl_per_step([replica_runs / "vrnn" / "replica-0"], tmp_path / "kl.png", units="bits").exists()

    ev = json.loads(before)
    converted = evaluation_in(ev, "bits")
    assert converted["units"] == "bits" and converted["step"] == ev["step"]
    assert converted["kl_recall"] == pytest.approx(ev["kl_recall"] / math.log(2))
    assert converted["kl_per_step"] == pytest.approx([v / math.log(2) for v in ev["kl_per_step"]])
    assert evaluation_in(ev, "nats")["negative_bound"] == ev["negative_bound"]
    with pytest.raises(GtmmError, match="unknown units 'bytes'"):
        write_report([replica_runs], tmp_path / "bad", units="bytes")
    assert not (tmp_path / "bad").exists()


def test_maze_samples_show_the_actions(tmp_path):
    """The maze's sample grid writes each step's action above its frame (Fig. 15): the labels
    come from the one-hot context, and the grid gets a strip of room for them."""
    from PIL import Image

    from gtmm.plots import action_label, save_sample_grid
    from gtmm.tasks.mnist_maze import ACTIONS

    assert action_label(np.zeros(4)) == "start"
    assert [action_label(np.eye(4)[a]) for a in range(4)] == ["\u2191", "\u2193", "\u2190", "\u2192"]
    assert [a[0] for a in ACTIONS] == ["up", "down", "left", "right"]
    frames = np.random.default_rng(0).uniform(size=(2, 3, 1, 32, 32)).astype(np.float32)
    plain = save_sample_grid(tmp_path / "plain.png", frames, frames, frames, 2)
    noted = save_sample_grid(tmp_path / "noted.png", frames, frames, frames, 2,
                             above=[["start", "\u2191", "\u2192"], ["start", "\u2193", "\u2190"]])
    (w1, h1), (w2, h2) = Image.open(plain).size, Image.open(noted).size
    assert w1 == w2 and h2 > h1


def test_reads_plot_of_a_trained_run(tmp_path, replica_runs, capsys):
    """`gtmm reads`: a PNG of the introspective run's read weights; the VRNN, which has no slots,
    and a sequence outside the evaluation's first batch get one-line errors, nothing written."""
    from gtmm.cli import main
    from gtmm.evaluate import plot_reads
    from tests.test_cli import main_error

    png = plot_reads(replica_runs / "introspective" / "replica-0", tmp_path / "reads.png", sequence=3)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "no memory slots to read" in main_error(capsys, "reads", str(replica_runs / "vrnn" / "replica-0"),
                                                   "--out", str(tmp_path / "v.png"))
    assert "choose 0-9" in main_error(capsys, "reads", str(replica_runs / "introspective" / "replica-0"),
                                      "--sequence", "10", "--out", str(tmp_path / "s.png"))
    assert not (tmp_path / "v.png").exists() and not (tmp_path / "s.png").exists()
    assert main(["reads", str(replica_runs / "introspective" / "replica-1"), "--out", str(tmp_path / "r1.png")]) == 0
    assert (tmp_path / "r1.png").exists()


def test_plot_over_a_folder_of_runs(tmp_path, replica_runs, capsys):
    """`gtmm plot FOLDER`: every run below it, as `gtmm report` finds them; runs of two experiments
    or a folder that is not a run are one-line errors, nothing written."""
    import shutil

    from gtmm.cli import main
    from gtmm.report import ensure_evaluated, find_runs
    from tests.test_cli import main_error

    runs = find_runs([replica_runs])
    assert len(runs) == 4
    for run in runs:
        ensure_evaluated(run, batches=1)
    assert main(["plot", str(replica_runs), "--out", str(tmp_path / "all.png")]) == 0
    assert (tmp_path / "all.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    other = tmp_path / "other"
    shutil.copytree(runs[0], other)
    ev = json.loads((other / "evaluation.json").read_text())
    (other / "evaluation.json").write_text(json.dumps({**ev, "l": 4}))
    line = main_error(capsys, "plot", str(replica_runs), str(other), "--out", str(tmp_path / "mixed.png"))
    assert "span 2 experiments" in line and "l=3" in line and "l=4" in line
    with pytest.raises(GtmmError, match="not a gtmm run directory"):
        plot_three_metrics([tmp_path], tmp_path / "none.png")
    assert not (tmp_path / "mixed.png").exists() and not (tmp_path / "none.png").exists()


def test_evaluate_takes_folders_of_runs(replica_runs, capsys):
    """`gtmm evaluate FOLDER`: every run below it, one JSON line each, naming its run."""
    from gtmm.cli import main

    capsys.readouterr()
    assert main(["evaluate", str(replica_runs / "vrnn"), "--batches", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["run_dir"] for line in lines] == [str(replica_runs / "vrnn" / f"replica-{r}") for r in (0, 1)]
    assert [line["seed"] for line in lines] == [0, 1] and all(line["step"] == 2 for line in lines)
    for line in lines:
        assert json.loads((Path(line["run_dir"]) / "evaluation.json").read_text())["kl_recall"] == line["kl_recall"]


def test_plot_and_report_share_one_definition_of_an_experiment(tmp_path, replica_runs, capsys):
    """`group_experiments`: a vrnn run with another learning rate splits the experiment by settings,
    so the report writes two sections and the plot refuses, naming the setting (it averaged them
    before); a maze of another grid is another experiment, and evaluations older than the grid
    setting read as the paper's 4x4."""
    import shutil

    from gtmm.cli import main
    from gtmm.report import ensure_evaluated, experiment_label, find_runs, group_experiments
    from tests.test_cli import main_error

    runs = find_runs([replica_runs])
    evals = {run: ensure_evaluated(run, batches=1) for run in runs}
    (key,) = group_experiments(evals)
    assert experiment_label(key) == "perfect-recall l=3 k=2" and experiment_label(key, "file") == "perfect-recall-l3-k2"
    other = tmp_path / "slower" / "vrnn"
    shutil.copytree(replica_runs / "vrnn" / "replica-0", other)
    config = json.loads((other / "config.json").read_text())
    config["train"]["learning_rate"] = 3e-4
    (other / "config.json").write_text(json.dumps(config))
    line = main_error(capsys, "plot", str(replica_runs), str(other), "--out", str(tmp_path / "mixed.png"))
    assert "span 2 experiments" in line and "lr=0.0003" in line and "lr=0.001" in line
    assert not (tmp_path / "mixed.png").exists()
    report = write_report([replica_runs, other], tmp_path / "report", batches=1, progress=False).read_text()
    headings = [h for h in report.splitlines() if h.startswith("## perfect-recall")]
    assert sorted(headings) == ["## perfect-recall, l = 3, k = 2, lr = 0.0003", "## perfect-recall, l = 3, k = 2, lr = 0.001"]
    # the same folder again, without the slower run: the figures of the sections it no longer has
    # go, a file of the user's stays
    (tmp_path / "report" / "mine.png").write_bytes(b"mine")
    write_report([replica_runs], tmp_path / "report", batches=1, progress=False)
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(
        ["report.md", "mine.png", "perfect-recall-l3-k2-metrics.png", "perfect-recall-l3-k2-vrnn-samples.png",
         "perfect-recall-l3-k2-introspective-samples.png"])
    # the maze: grid 6 apart from grid 4, and an evaluation without "grid" is grid 4
    maze = {run: {**ev, "task": "mnist-maze", **({"grid": 6} if run.parent.name == "vrnn" else {})}
            for run, ev in evals.items()}
    assert sorted(map(experiment_label, group_experiments(maze))) == ["mnist-maze l=3 k=2", "mnist-maze l=3 k=2 grid=6"]
    maze = {run: {**ev, "grid": 4} for run, ev in maze.items() if run.parent.name != "vrnn"}
    assert len(group_experiments({**maze, **{r: {**e, "task": "mnist-maze"} for r, e in evals.items()
                                             if r.parent.name == "vrnn"}})) == 1


def test_a_config_edited_by_hand_is_refused(tmp_path, replica_runs):
    """A config.json whose training settings and architecture name different models is an error,
    not an evaluation of one model reported under the other's name."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(replica_runs / "vrnn" / "replica-0", run)
    meta = json.loads((run / "config.json").read_text())
    meta["train"]["model"] = "introspective"
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(GtmmError, match="name model 'introspective' but its architecture is 'vrnn'"):
        evaluate_run(run, batches=1)


def _readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (Path(__file__).resolve().parents[1] / "README.md").read_text(), re.S)


def test_readme_python_calls_bind_to_the_library():
    """Every call in the README's Python blocks of a name they import binds to that name's
    signature: a renamed function, class or keyword fails here without running anything heavy."""
    blocks = _readme_python_blocks()
    assert len(blocks) >= 2
    checked = []
    for block in blocks:
        tree = ast.parse(block)
        names: dict = {}
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                exec(compile(ast.Module([node], []), "README.md", "exec"), names)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
                inspect.signature(names[node.func.id]).bind(*node.args, **{k.arg: k.value for k in node.keywords})
                checked.append(node.func.id)
    assert {"train", "evaluate_run", "write_report", "expand_grid", "sweep", "make_task", "init_model",
            "loss_fn", "load_trained", "kl_per_step"} <= set(checked), checked


def test_readme_notebook_block_runs_on_a_trained_run(replica_runs):
    """The README's notebook block, as written, on a trained run (l = 3, k = 2, so T = 5)."""
    (block,) = [b for b in _readme_python_blocks() if "load_trained" in b]
    assert '"runs/intro"' in block
    names: dict = {}
    exec(block.replace('"runs/intro"', repr(str(replica_runs / "introspective" / "replica-0"))), names)
    assert names["step"] == 2 and names["config"].model == "introspective"
    for frames in (names["recon"], names["gen"]):
        assert frames.shape == (4, 5, 1, 32, 32) and np.all((frames >= 0) & (frames <= 1))
    assert len(names["ev"]["kl_per_step"]) == 5 and np.isfinite(names["ev"]["kl_recall"])


def test_training_curves_fit_the_axis_to_what_follows_the_first_steps(tmp_path):
    """The bound falls from thousands of nats to its working range in the first steps; the axis is
    fitted to the rest, and the panel says what it cut. A curve without such a start is left whole."""
    import matplotlib.pyplot as plt

    from gtmm.plots import _draw_training_curve

    def run(name, values):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.jsonl").write_text("".join(json.dumps({"step": i + 1, "negative_bound": float(v)}) + "\n"
                                                 for i, v in enumerate(values)))
        return d, {}

    steps = np.arange(1000)
    falls = 2000 + 12000 * np.exp(-steps / 10.0) - 0.05 * steps  # 14,000 to 2,000 in 50 steps, then -50
    fig, (cut, whole) = plt.subplots(1, 2)
    _draw_training_curve(cut, {"lru": [run("a", falls), run("b", falls + 3)]}, "negative_bound", "bound")
    low, high = cut.get_ylim()
    # the rest: from about 2,250 (step 51, smoothed) down to 1,950, with 5% padding
    assert 1900 < low < 1950 and 2200 < high < 2400, (low, high)
    assert [t.get_text() for t in cut.texts] == ["the first 5% of training is cut off the axis (up to 14,003)"]
    _draw_training_curve(whole, {"vrnn": [run("c", 2000 - 0.5 * steps)]}, "negative_bound", "bound")
    assert whole.get_ylim()[1] > 1999 and not whole.texts
    plt.close(fig)
    # a run that diverged (nan, inf in its log) is still drawn, and fitted on its finite values
    fig, diverged = plt.subplots()
    broken = falls.copy()
    broken[600:620] = np.nan
    broken[700] = np.inf
    _draw_training_curve(diverged, {"lru": [run("d", broken)]}, "negative_bound", "bound")
    assert np.all(np.isfinite(diverged.get_ylim())) and diverged.get_ylim()[1] < 3000
    plt.close(fig)


def test_plot_of_runs_not_yet_evaluated_draws_their_training_curves(tmp_path, capsys, monkeypatch):
    """Runs still training have no evaluation.json: plot draws the two training panels from their
    metrics and config, for evaluated runs beside them too, and says how many are not evaluated."""
    from dataclasses import asdict

    from PIL import Image

    from gtmm.cli import main

    def run(name, model, evaluated=False, steps=50):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"train": asdict(TrainConfig(model=model, l=3, k=2, steps=steps))}))
        (d / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "negative_bound": 5000.0 / i,
                                                             "last_step_kl": 1.0 + i / 50}) + "\n"
                                                 for i in range(1, 51)))
        if evaluated:
            (d / "evaluation.json").write_text(json.dumps({"model": model, "task": "perfect-recall", "l": 3,
                                                           "k": 2, "kl_per_step": [1.0] * 5, "recall_start": 3}))
        return d

    # one still headed for 80 steps: training curves do not depend on it, so it is no other experiment
    runs = [run("lru-0", "lru"), run("lru-1", "lru", steps=80), run("vrnn-0", "vrnn")]
    out = tmp_path / "curves.png"
    assert main(["plot", *map(str, runs), "--out", str(out)]) in (0, None)
    width, height = Image.open(out).size
    assert 1.9 < width / height < 3.3  # two panels (three are about 3.9 wide per unit of height)
    mixed = [*runs, run("vrnn-1", "vrnn", evaluated=True)]
    assert main(["plot", *map(str, mixed), "--out", str(tmp_path / "mixed.png")]) in (0, None)
    assert Image.open(tmp_path / "mixed.png").size == (width, height)  # the same two panels
    capsys.readouterr()
    import gtmm.plots as plots

    titles, real_save = [], plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: titles.append(fig.get_suptitle()) or real_save(fig, path))
    plots.plot_three_metrics(mixed, tmp_path / "titled.png")
    plots.plot_three_metrics(runs, tmp_path / "titled.png")
    assert titles == ["3 of 4 runs not evaluated yet: training curves only (gtmm evaluate adds KL per step)",
                      "not evaluated yet: training curves only (gtmm evaluate adds KL per step)"]
    fresh = run("fresh", "lru")
    (fresh / "metrics.jsonl").unlink()  # trained into, no step logged yet
    assert main(["plot", str(fresh), "--out", str(tmp_path / "fresh.png")]) not in (0, None)
    assert "has logged a training step yet" in capsys.readouterr().err
