import numpy as np
import pytest

from gtmm.errors import GtmmError
from gtmm.tasks import make_task


def test_perfect_recall_obeys_algorithm_1(mnist):
    task = make_task("perfect-recall", dataset=mnist, l=15, k=5)
    b = task.batch("train", 6, seed=3, step=7)
    assert b.frames.shape == (6, 20, 1, 32, 32)
    assert b.frames.dtype == np.float32 and b.frames.min() >= 0 and b.frames.max() <= 1
    np.testing.assert_array_equal(b.frames[:, 15:], b.frames[:, :5])
    np.testing.assert_array_equal(b.image_index[:, 15:], b.image_index[:, :5])
    np.testing.assert_array_equal(b.labels[:, 15:], b.labels[:, :5])
    assert b.source_index[0].tolist() == [-1] * 15 + [0, 1, 2, 3, 4]
    assert b.recall_start == 15
    # labels are the dataset's labels of those images
    np.testing.assert_array_equal(b.labels, mnist.train.labels[b.image_index])
    # the first l frames are random draws: not all the same image
    assert len(np.unique(b.image_index[:, :15])) > 30


def test_batches_are_deterministic_in_seed_and_step(mnist):
    task = make_task("perfect-recall", dataset=mnist, l=10, k=3)
    a, b = task.batch("train", 4, 0, 5), task.batch("train", 4, 0, 5)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert not np.array_equal(a.image_index, task.batch("train", 4, 0, 6).image_index)
    assert not np.array_equal(a.image_index, task.batch("train", 4, 1, 5).image_index)


def test_train_and_eval_images_are_disjoint(mnist):
    tr = {img.tobytes() for img in mnist.train.images[:3000]}
    assert not any(img.tobytes() in tr for img in mnist.eval.images[:500])


@pytest.mark.parametrize("l,k,msg", [(5, 6, "must not exceed"), (0, 1, "positive"), (5, -1, "positive")])
def test_invalid_parameters(mnist, l, k, msg):
    with pytest.raises(GtmmError, match=msg):
        make_task("perfect-recall", dataset=mnist, l=l, k=k)


def test_unknown_task():
    with pytest.raises(GtmmError, match="unknown task"):
        make_task("no-such-task", l=5, k=2)


# --- the other digit and character tasks (paper section 5, Algorithms 2-4, the maze) -----------

from gtmm.data.common import ImageDataset, ImageSplit  # noqa: E402
from gtmm.tasks import TASKS, task_params  # noqa: E402

MNIST_TASKS = ["perfect-recall", "parity-recall", "dynamic-dependency", "similarity-cued-recall", "mnist-maze"]


@pytest.fixture(scope="module")
def tasks(mnist, omniglot, episode_dataset):
    made = {name: make_task(name, dataset=mnist) for name in MNIST_TASKS}
    made["one-shot-recall"] = make_task("one-shot-recall", dataset=omniglot)
    made["rotation-3d"] = make_task("rotation-3d", dataset=episode_dataset)
    return made


def test_defaults_are_the_papers(tasks):
    assert set(tasks) == set(TASKS)
    assert (tasks["perfect-recall"].l, tasks["perfect-recall"].k) == (15, 5)
    assert (tasks["parity-recall"].l, tasks["parity-recall"].k) == (15, 5)
    for name in ("one-shot-recall", "dynamic-dependency", "similarity-cued-recall"):
        assert (tasks[name].l, tasks[name].k, tasks[name].length) == (20, 5, 25)
    maze = tasks["mnist-maze"]
    assert (maze.grid, maze.length, maze.context_size, maze.recall_start) == (4, 25, 4, 13)


def test_parity_recall_obeys_algorithm_2(mnist):
    task = make_task("parity-recall", dataset=mnist, l=12, k=5)
    b = task.batch("train", 40, seed=1, step=0)
    assert b.frames.shape == (40, 17, 1, 32, 32) and b.recall_start == 12
    np.testing.assert_array_equal(b.labels, mnist.train.labels[b.image_index])  # labels are the images' own
    np.testing.assert_array_equal(b.labels[:, 12:], b.labels[:, :5] % 2)  # even -> a 0, odd -> a 1
    assert set(np.unique(b.labels[:, 12:])) == {0, 1}
    assert b.source_index[0].tolist() == [-1] * 12 + [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(b.frames[:, 12:], task._frames("train", b.image_index[:, 12:]))
    # fresh images, not copies of the prefix
    assert not np.array_equal(b.image_index[:, 12:], b.image_index[:, :5])
    assert not task.copies_source


def test_dynamic_dependency_obeys_algorithm_3(mnist):
    task = make_task("dynamic-dependency", dataset=mnist, l=10, k=12)  # k may exceed l
    b = task.batch("train", 50, seed=2, step=0)
    assert b.frames.shape[1] == 22
    np.testing.assert_array_equal(b.labels, mnist.train.labels[b.image_index])
    assert (b.source_index[:, :10] == -1).all()
    for t in range(10, 22):
        address = b.labels[:, t - 1]  # the previous frame's digit, a 0-based position
        np.testing.assert_array_equal(b.source_index[:, t], address)
        rows = np.arange(50)
        np.testing.assert_array_equal(b.image_index[:, t], b.image_index[rows, address])  # the very image
        np.testing.assert_array_equal(b.frames[:, t], b.frames[rows, address])
        np.testing.assert_array_equal(b.labels[:, t], b.labels[rows, address])  # so the chain continues


def test_similarity_cued_recall_obeys_algorithm_4(mnist):
    l, k = 8, 5
    task = make_task("similarity-cued-recall", dataset=mnist, l=l, k=k)
    b = task.batch("train", 200, seed=3, step=0)
    start = b.source_index[:, l]
    # r ~ U{1..l-k} (1-based), so the run starts at 0-based r - 1 in {0..l-k-1}: all of them occur
    assert set(start.tolist()) == set(range(l - k))
    assert (b.source_index[:, :l] == -1).all()
    for i in range(200):
        run = list(range(start[i], start[i] + k))
        assert b.source_index[i, l:].tolist() == run  # a contiguous run of the prefix
        np.testing.assert_array_equal(b.image_index[i, l:], b.image_index[i, run])
        np.testing.assert_array_equal(b.frames[i, l:], b.frames[i, run])


def test_mnist_maze_walk_stays_on_the_grid_and_revisits_show_the_same_image(mnist):
    task = make_task("mnist-maze", dataset=mnist, l=10, k=30, grid=3)
    b = task.batch("train", 30, seed=4, step=0)
    T = 40
    assert b.frames.shape == (30, T, 1, 32, 32) and b.context.shape == (30, T, 4) and b.recall_start == 10
    pos = b.positions
    assert pos.min() == 0 and pos.max() == 2  # on the grid, and reaching its edges
    moves = {0: (-1, 0), 1: (1, 0), 2: (0, -1), 3: (0, 1)}  # up, down, left, right
    assert (b.context[:, 0] == 0).all()  # no action before the first step
    ctx = b.context[:, 1:]
    assert ((ctx == 0) | (ctx == 1)).all() and (ctx.sum(-1) == 1).all()  # one-hot
    step = pos[:, 1:] - pos[:, :-1]
    expected = np.array([moves[a] for a in ctx.argmax(-1).ravel()]).reshape(step.shape)
    np.testing.assert_array_equal(step, expected)  # c_t is the move that led into step t's cell
    cell = pos[..., 0] * 3 + pos[..., 1]
    for i in range(30):
        for t in range(T):
            same = np.flatnonzero(cell[i] == cell[i, t])
            assert b.first_visit[i, t] == same[0]
            assert b.source_index[i, t] == (same[0] if same[0] < t else -1)
            assert (b.image_index[i, same] == b.image_index[i, t]).all()  # a revisit shows the same image
        # different cells hold different images
        assert len(np.unique(b.image_index[i])) == len(np.unique(cell[i]))
    assert (b.source_index >= 0).mean() > 0.5  # a 40-step walk on 9 cells revisits a lot
    np.testing.assert_array_equal(b.labels, mnist.train.labels[b.image_index])
    # moves are uniform among the legal ones: from a corner only two, both used
    corner = (pos[:, :-1] == 0).all(-1)
    assert set(ctx.argmax(-1)[corner].tolist()) == {1, 3}


def test_one_shot_recall_keeps_held_out_characters_for_evaluation(omniglot):
    task = make_task("one-shot-recall", dataset=omniglot)
    held_out = set(np.unique(omniglot.eval.labels).tolist())
    trained = set(np.unique(omniglot.train.labels).tolist())
    assert not held_out & trained
    ev = task.batch("eval", 20, seed=0, step=0)
    tr = task.batch("train", 20, seed=0, step=0)
    assert set(ev.labels.ravel().tolist()) <= held_out
    assert not set(tr.labels.ravel().tolist()) & held_out
    np.testing.assert_array_equal(ev.image_index[:, 20:], ev.image_index[:, :5])
    assert ev.frames.shape == (20, 25, 1, 32, 32)
    # three held-out characters in every alphabet
    alphabets = [name.split("/")[0] for name in omniglot.class_names]
    per_alphabet = {a: 0 for a in alphabets}
    for c in held_out:
        per_alphabet[alphabets[c]] += 1
    assert set(per_alphabet.values()) == {3} and len(per_alphabet) == 8


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_is_deterministic_in_seed_and_step(tasks, name):
    task = tasks[name]
    a, b = task.batch("train", 3, 0, 5), task.batch("train", 3, 0, 5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.image_index, task.batch("train", 3, 0, 6).image_index)
    assert not np.array_equal(a.image_index, task.batch("eval", 3, 0, 5).image_index)
    assert a.frames.shape == (3, task.length, *task.frame_shape) and a.context.shape == (3, task.length, task.context_size)
    assert a.recall_start == task.recall_start
    # scripts that read only a run's config (scripts/kl_windows.py) split the phases at l
    assert task.recall_start == task.l


@pytest.mark.parametrize("name,params,msg", [
    ("dynamic-dependency", {"l": 9, "k": 5}, "l >= 10"),
    ("similarity-cued-recall", {"l": 5, "k": 5}, "k < l"),
    ("similarity-cued-recall", {"l": 5, "k": 7}, "k < l"),
    ("parity-recall", {"l": 4, "k": 5}, "must not exceed"),
    ("one-shot-recall", {"l": 4, "k": 5}, "must not exceed"),
    ("mnist-maze", {"grid": 1}, "cannot hold a walk"),
    ("mnist-maze", {"l": 0}, "positive"),
    ("perfect-recall", {"grid": 3}, "takes no parameter grid"),
])
def test_invalid_task_parameters(name, params, msg):
    with pytest.raises(GtmmError, match=msg):
        task_params(name, **params)
    with pytest.raises(GtmmError, match=msg):  # before any data is loaded
        make_task(name, dataset=None, **params)


def test_maze_needs_an_image_per_cell():
    tiny = ImageSplit(np.zeros((10, 32, 32), np.uint8), np.arange(10, dtype=np.int32))
    with pytest.raises(GtmmError, match="needs 16 different images"):
        make_task("mnist-maze", dataset=ImageDataset("tiny", tiny, tiny, "test"))


def test_maze_context_reaches_the_model_config(tasks):
    from gtmm.train import TrainConfig

    config = TrainConfig(model="vrnn", task="mnist-maze").validate()
    model_config = config.model_config(tasks["mnist-maze"])
    assert (config.l, config.k) == (13, 12)
    assert model_config.task_context_size == 4 and model_config.sequence_length == 25
    assert TrainConfig(model="vrnn", task="one-shot-recall").model_config(tasks["one-shot-recall"]).task_context_size == 0
