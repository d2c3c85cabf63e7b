"""Classification and segmentation metrics from confusion matrices, and mAP from additive
score histograms, against scikit-learn where it has the same metric."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    jaccard_score,
    precision_score,
    recall_score,
)

from vitmae.tasks import build_task
from vitmae.tasks.metrics import (
    average_precision,
    background_baseline,
    classification_metrics,
    confusion_matrix,
    score_histograms,
    segmentation_metrics,
)
from vitmae.tasks.multilabel import BINS


def test_segmentation_metrics_by_hand_with_void():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 1]])  # the two void pixels are not counted
    cm = confusion_matrix(pred, target, K=4, ignore_index=255)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    m = segmentation_metrics(cm, ["bg", "a", "b", "never"])
    # IoU = tp / (truth + pred - tp): bg 1/(2+2-1), a 2/(2+3-2), b 1/(2+1-1); 'never' 0/0
    assert m["per_class_iou"]["bg"] == pytest.approx(1 / 3)
    assert m["per_class_iou"]["a"] == pytest.approx(2 / 3)
    assert m["per_class_iou"]["b"] == pytest.approx(1 / 2)
    assert math.isnan(m["per_class_iou"]["never"])
    assert m["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)  # NaN class left out
    assert m["pixel_acc"] == pytest.approx(4 / 6)
    assert m["mean_class_acc"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    base = background_baseline(cm)
    # everything class 0: bg IoU 2/6, a and b 0 -> mIoU over the three present classes
    assert base["baseline_pixel_acc"] == pytest.approx(2 / 6)
    assert base["baseline_miou"] == pytest.approx((2 / 6) / 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_dice_and_iou_per_class_match_sklearns_f1_and_jaccard(seed):
    # Dice is each class's F1 over the pixels, IoU its Jaccard index; a class that occurs in
    # neither truth nor prediction is NaN and left out of both means
    rng = np.random.default_rng(seed)
    K, N = 5, 4000
    target = rng.choice(K - 1, N, p=[0.7, 0.2, 0.07, 0.03])  # class 4 never occurs
    pred = np.where(rng.random(N) < 0.7, target, rng.choice(K - 1, N))
    m = segmentation_metrics(confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target),
                                              K))
    dice, iou = list(m["per_class_dice"].values()), list(m["per_class_iou"].values())
    labels = range(K - 1)
    np.testing.assert_allclose(dice[:-1], f1_score(target, pred, average=None, labels=labels),
                               atol=1e-12)
    np.testing.assert_allclose(iou[:-1], jaccard_score(target, pred, average=None,
                                                       labels=labels), atol=1e-12)
    assert math.isnan(dice[-1]) and math.isnan(iou[-1])
    assert m["mdice"] == pytest.approx(f1_score(target, pred, average="macro", labels=labels))
    assert m["mdice"] > m["miou"]  # 2t / (1 + t) > t for each class with 0 < t < 1


def test_void_never_counts_and_labels_out_of_range_raise():
    cm = confusion_matrix(torch.tensor([3, 0]), torch.tensor([255, 0]), K=2, ignore_index=255)
    assert cm.sum() == 1
    with pytest.raises(ValueError, match="labels outside"):
        confusion_matrix(torch.tensor([0]), torch.tensor([255]), K=2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top1_and_per_class_accuracy_match_sklearn_on_unbalanced_classes(seed):
    rng = np.random.default_rng(seed)
    N, K = 500, 5
    target = rng.choice(K, N, p=[0.5, 0.25, 0.15, 0.07, 0.03])  # unbalanced on purpose
    # right 60% of the time, else a guess biased towards class 0: precision != recall
    guess = rng.choice(K, N, p=[0.6, 0.1, 0.1, 0.1, 0.1])
    pred = np.where(rng.random(N) < 0.6, target, guess)
    cm = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), K)
    m = classification_metrics(cm, list("abcde"))
    recall = recall_score(target, pred, average=None, labels=range(K))
    assert m["n"] == N
    assert m["top1"] == pytest.approx(accuracy_score(target, pred), abs=1e-12)
    np.testing.assert_allclose(list(m["per_class"].values()), recall, atol=1e-12)
    assert list(m["per_class"]) == list("abcde")
    # the data set tells the right metrics from their look-alikes
    precision = precision_score(target, pred, average=None, labels=range(K))
    assert np.abs(precision - recall).max() > 0.05
    assert abs(balanced_accuracy_score(target, pred) - accuracy_score(target, pred)) > 0.02


def test_classification_evaluator_matches_sklearn_over_batches():
    rng = np.random.default_rng(3)
    N, K = 90, 4
    target = rng.choice(K, N, p=[0.7, 0.2, 0.05, 0.05])
    logits = rng.normal(size=(N, K)) + 2.0 * np.eye(K)[target] * (rng.random((N, 1)) < 0.5)
    ev = build_task("classify", num_classes=K).evaluator()
    for s in range(0, N, 32):  # batches of 32, the last one partial
        out = torch.from_numpy(logits[s:s + 32])
        ev.update(lambda imgs, out=out: out, (torch.zeros(len(out), 1, 4, 4),
                                              torch.from_numpy(target[s:s + 32])))
    r, pred = ev.result(), logits.argmax(1)
    assert r["n"] == N and r["top1"] == pytest.approx(accuracy_score(target, pred))
    np.testing.assert_allclose(list(r["per_class"].values()),
                               recall_score(target, pred, average=None, labels=range(K)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    N, K = 600, 6
    targets = (rng.random((N, K)) < rng.uniform(0.05, 0.5, K)).astype(np.int64)
    logits = rng.normal(size=(N, K)) + 1.5 * targets * rng.uniform(0, 1, K)
    scores = 1 / (1 + np.exp(-logits))
    pos, neg = score_histograms(torch.from_numpy(scores), torch.from_numpy(targets), BINS)
    ap = average_precision(pos, neg)
    expect = [average_precision_score(targets[:, k], scores[:, k]) for k in range(K)]
    np.testing.assert_allclose(ap.numpy(), expect, atol=1e-3)


def test_histograms_add_across_shards_and_class_without_positives_is_nan():
    g = torch.Generator().manual_seed(0)
    scores, targets = torch.rand(50, 3, generator=g), torch.rand(50, 3, generator=g) < 0.3
    targets[:, 2] = False
    whole = score_histograms(scores, targets, 100)
    halves = [score_histograms(scores[s], targets[s], 100) for s in (slice(0, 20), slice(20, 50))]
    assert torch.equal(whole[0], halves[0][0] + halves[1][0])
    assert torch.equal(whole[1], halves[0][1] + halves[1][1])
    ap = average_precision(*whole)
    assert not ap[:2].isnan().any() and ap[2].isnan()


def test_multilabel_evaluator_reports_map_accuracies_and_baseline():
    targets = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    logits = torch.tensor([[3.0, -2, -1], [-1, 2, -3], [2, -1, -2], [-2, -2, -2]])
    ev = build_task("multilabel", num_classes=3, classes=["a", "b", "c"]).evaluator()
    ev.update(lambda imgs: logits, (torch.zeros(4, 3, 8, 8), targets))
    r = ev.result()
    assert r["n"] == 4 and r["map_classes"] == 2  # class 'c' has no positive: left out
    assert r["map"] == pytest.approx(1.0)  # every positive outscores every negative
    assert r["per_label_acc"] == pytest.approx(11 / 12)  # one miss: image 2, label b
    assert r["exact_match"] == pytest.approx(3 / 4)
    assert r["baseline_per_label_acc"] == pytest.approx(8 / 12)


def test_background_baseline_predicts_class_0_everywhere():
    cm = torch.tensor([[3, 1, 0], [2, 3, 0], [0, 1, 1]])  # truth: 4, 5, 2 pixels
    base = background_baseline(cm)
    # all 11 pixels called class 0: class 0's IoU 4 / 11, the others 0
    assert base["baseline_pixel_acc"] == pytest.approx(4 / 11)
    assert base["baseline_miou"] == pytest.approx((4 / 11) / 3)


def test_one_item_classes_and_one_pixel_matrices_count_in_full():
    # a class with a single item, predicted right, has recall 1; one item gives top-1 1
    m = classification_metrics(torch.tensor([[5, 1], [0, 1]]))
    assert m["per_class"] == {"0": pytest.approx(5 / 6), "1": 1.0}
    assert classification_metrics(torch.tensor([[1, 0], [0, 0]]))["top1"] == 1.0
    assert segmentation_metrics(torch.tensor([[0, 0], [0, 1]]))["pixel_acc"] == 1.0


def test_default_names_are_the_class_indices_and_wrong_name_lists_raise():
    cm = torch.tensor([[2, 0, 1], [0, 1, 0], [1, 0, 3]])
    assert list(classification_metrics(cm)["per_class"]) == ["0", "1", "2"]
    assert list(segmentation_metrics(cm)["per_class_iou"]) == ["0", "1", "2"]
    for names in (["a", "b"], ["a", "b", "c", "d"]):  # one name per class, no more, no less
        with pytest.raises(ValueError):
            classification_metrics(cm, names)
        with pytest.raises(ValueError):
            segmentation_metrics(cm, names)


def test_the_first_label_past_the_classes_is_refused_by_name():
    with pytest.raises(ValueError, match=r"labels outside 0\.\.3 \(got 0\.\.4\)"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 4]), K=4)


def test_scores_at_both_ends_of_the_range_fall_in_their_own_bins():
    # 0 and 1 exactly, and scores in the first and last bins of 10: every one in its own
    # class's histogram, ordered as sklearn's average precision orders them
    scores = torch.tensor([[1.0], [0.97], [0.93], [0.04], [0.0], [0.12]])
    targets = torch.tensor([[1], [0], [1], [1], [0], [0]])
    pos, neg = score_histograms(scores, targets, 10)
    assert pos.tolist() == [[1, 0, 0, 0, 0, 0, 0, 0, 0, 2]]
    assert neg.tolist() == [[1, 1, 0, 0, 0, 0, 0, 0, 0, 1]]
    pos2, neg2 = score_histograms(torch.cat([scores, scores], 1), torch.cat([targets] * 2, 1), 10)
    assert pos2.sum(1).tolist() == [3, 3] and neg2.sum(1).tolist() == [3, 3]
