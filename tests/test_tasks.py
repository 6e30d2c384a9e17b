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
