import math

import torch

from bench.evaluate import evaluate, scores, update_confusion


def test_confusion_and_miou_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 2]])
    conf = torch.zeros(3, 3, dtype=torch.int64)
    update_confusion(conf, pred, target, ignore_index=255)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    s = scores(conf)
    # IoU: class0 1/(2+2-1)=1/3, class1 2/(2+3-2)=2/3, class2 1/(2+1-1)=1/2
    assert math.isclose(s["miou"], (1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert math.isclose(s["pixel_acc"], 4 / 6)


def test_absent_classes_do_not_count_in_miou():
    conf = torch.zeros(4, 4, dtype=torch.int64)
    update_confusion(conf, torch.tensor([0, 1]), torch.tensor([0, 1]), 255)
    s = scores(conf)
    assert s["miou"] == 1.0
    assert s["per_class_iou"][2] is None and s["per_class_iou"][3] is None


def test_evaluate_runs_a_predictor_over_batches():
    def predict(x):  # predicts class = channel argmax
        return x

    images = torch.zeros(2, 3, 2, 2)
    images[:, 1] = 1.0
    targets = torch.ones(2, 2, 2, dtype=torch.long)
    out = evaluate(predict, [(images, targets)], 3, 255, torch.device("cpu"))
    assert out["miou"] == 1.0 and out["pixel_acc"] == 1.0
