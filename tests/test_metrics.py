"""Generation accuracy (SPEC section 5): a perfect copy scores 1, an unrelated frame near chance."""

import numpy as np
import pytest

from gtmm.metrics import GenerationScorer, combine
from gtmm.tasks import make_task


def _scores(task, generated_from, batches=20, batch_size=10):
    scorer = GenerationScorer(task)
    parts = []
    for b in range(batches):
        batch = task.batch("eval", batch_size, 7, b)
        parts.append(scorer(batch, generated_from(batch, b)))
    return combine(parts)


def _copy(batch, b):
    return batch.frames


def _random_images(task):
    split = task.dataset.split("eval")

    def draw(batch, b):
        rng = np.random.default_rng(b)
        idx = rng.integers(0, len(split), size=batch.frames.shape[:2])
        return (split.images[idx].astype(np.float32) / 255.0)[:, :, None]
    return draw


@pytest.mark.parametrize("name,params", [("perfect-recall", {"l": 15, "k": 5}),
                                         ("dynamic-dependency", {"l": 20, "k": 5}),
                                         ("similarity-cued-recall", {"l": 20, "k": 5}),
                                         ("parity-recall", {"l": 15, "k": 5}),
                                         ("mnist-maze", {"l": 13, "k": 12})])
def test_perfect_copy_scores_one_and_random_frames_score_near_chance(mnist, name, params):
    task = make_task(name, dataset=mnist, **params)
    perfect = _scores(task, _copy)
    if task.copies_source:
        assert perfect.scored > 50 and perfect.value == 1.0
    else:  # parity: the true frames are new images of 0 or 1, which 1-NN on the bank gets nearly all right
        assert perfect.scored > 50 and perfect.value > 0.98
        refs, digits = GenerationScorer(task).bank
        exemplar = {d: refs[np.flatnonzero(digits == d)[0]].reshape(1, 32, 32) for d in (0, 1)}
        ideal = _scores(task, lambda batch, b: np.stack([[exemplar[int(d) % 2] for d in row] for row in batch.labels]))
        assert ideal.value == 1.0
    rand = _scores(task, _random_images(task))
    assert rand.scored == perfect.scored
    # chance is 1/(distinct observed images) for copies, 1/2 for parity; 200+ scored frames
    se = np.sqrt(rand.chance * (1 - rand.chance) / rand.scored)
    assert abs(rand.value - rand.chance) < 4 * se + 0.02, (rand.value, rand.chance)


def test_blank_generations_are_not_scored_as_correct(mnist):
    task = make_task("perfect-recall", dataset=mnist, l=15, k=5)
    blank = _scores(task, lambda batch, b: np.zeros_like(batch.frames))
    assert blank.value < 0.3
