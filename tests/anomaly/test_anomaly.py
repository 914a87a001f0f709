"""Scoring, threshold calibration and evaluation metrics."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from fbad.anomaly import (
    CalibrationWarning,
    ScoreSpec,
    ThresholdResult,
    anomaly_map,
    apply_threshold,
    calibrate_from_config,
    calibrate_threshold,
    detection_rate_by,
    evaluate,
    image_scores,
    mean_intensity,
    pixel_auroc,
    pr_curve_data,
    roc_curve_data,
    score_images,
)

CONF = Path(__file__).resolve().parents[2] / "conf" / "threshold"


# --- scoring ---------------------------------------------------------------------------------------------


def test_anomaly_map_kinds():
    x = torch.zeros(2, 3, 16, 16)
    recon = torch.full_like(x, 0.5)
    recon[:, 0] = -0.5  # channel 0 errs the other way
    torch.testing.assert_close(anomaly_map(recon, x, "sq"), torch.full((2, 1, 16, 16), 0.25))
    torch.testing.assert_close(anomaly_map(recon, x, "abs"), torch.full((2, 1, 16, 16), 0.5))
    ssim = anomaly_map(torch.rand(2, 1, 24, 32), torch.rand(2, 1, 24, 32), "ssim")
    assert ssim.shape == (2, 1, 24, 32)
    same = torch.rand(2, 1, 24, 32)
    assert anomaly_map(same, same.clone(), "ssim").abs().max() < 1e-5
    with pytest.raises(ValueError, match="kind"):
        anomaly_map(recon, x, "ncc")


def _known_map() -> torch.Tensor:
    # image 0: values 0..99 in a 10x10 grid; image 1: the same reversed
    v = torch.arange(100, dtype=torch.float32).reshape(1, 1, 10, 10)
    return torch.cat([v, v.flip(-1).flip(-2)])


def test_image_scores_without_mask():
    amap = _known_map()
    torch.testing.assert_close(image_scores(amap, reduction="mean"), torch.tensor([49.5, 49.5]))
    torch.testing.assert_close(image_scores(amap, reduction="max"), torch.tensor([99.0, 99.0]))
    # top 5 % of 100 pixels = 95..99 -> 97; top 1 % -> 99
    torch.testing.assert_close(
        image_scores(amap, reduction="topk", topk_percent=5), torch.tensor([97.0, 97.0])
    )
    torch.testing.assert_close(
        image_scores(amap, reduction="topk", topk_percent=1), torch.tensor([99.0, 99.0])
    )
    torch.testing.assert_close(
        image_scores(amap, reduction="topk", topk_percent=100), torch.tensor([49.5, 49.5])
    )


def test_image_scores_with_masks_of_different_sizes():
    amap = _known_map()
    mask = torch.zeros(2, 1, 10, 10, dtype=torch.bool)
    mask[0, 0, :2] = True  # image 0: values 0..19
    mask[1, 0, 5:] = True  # image 1: flipped rows 5..9 hold values 49..0
    torch.testing.assert_close(image_scores(amap, mask, "mean"), torch.tensor([9.5, 24.5]))
    torch.testing.assert_close(image_scores(amap, mask, "max"), torch.tensor([19.0, 49.0]))
    # top 10 %: image 0 has 20 pixels -> k=2 -> (19+18)/2; image 1 has 50 -> k=5 -> 47
    torch.testing.assert_close(
        image_scores(amap, mask.float(), "topk", topk_percent=10), torch.tensor([18.5, 47.0])
    )
    # a tiny percentage still keeps one pixel
    torch.testing.assert_close(
        image_scores(amap, mask, "topk", topk_percent=0.01), torch.tensor([19.0, 49.0])
    )


def test_image_scores_agree_with_a_per_image_loop():
    g = torch.Generator().manual_seed(0)
    amap = torch.rand(8, 1, 32, 32, generator=g)
    mask = torch.rand(8, 1, 32, 32, generator=g) > torch.linspace(0.1, 0.9, 8).view(8, 1, 1, 1)
    for reduction in ("mean", "max", "topk"):
        got = image_scores(amap, mask, reduction, topk_percent=3.0)
        for i in range(8):
            inside = amap[i][mask[i]]
            if reduction == "mean":
                want = inside.mean()
            elif reduction == "max":
                want = inside.max()
            else:
                k = max(1, int(np.ceil(inside.numel() * 3.0 / 100)))
                want = inside.sort(descending=True).values[:k].mean()
            torch.testing.assert_close(got[i], want)


def test_empty_mask_gives_nan_and_a_warning():
    amap = _known_map()
    mask = torch.ones(2, 1, 10, 10)
    mask[1] = 0
    for reduction in ("mean", "max", "topk"):
        with pytest.warns(UserWarning, match="empty mask"):
            s = image_scores(amap, mask, reduction)
        assert torch.isfinite(s[0]) and torch.isnan(s[1])


def test_mean_intensity_rule_and_its_direction():
    recon = torch.zeros(2, 1, 8, 8)
    recon[0] = 0.1
    recon[1, :, :4] = 0.4  # mean 0.2 over the image, 0.4 in the top half
    torch.testing.assert_close(mean_intensity(recon), torch.tensor([0.1, 0.2]))
    top = torch.zeros_like(recon)
    top[:, :, :4] = 1
    torch.testing.assert_close(mean_intensity(recon, top), torch.tensor([0.1, 0.4]))
    spec = ScoreSpec.from_config({"method": "mean_intensity"})
    assert spec.direction == "below" and ScoreSpec().direction == "above"
    scores = score_images(recon, torch.rand_like(recon), spec=spec)
    result = calibrate_threshold([0.5], "fixed", value=0.15, direction=spec.direction)
    assert apply_threshold(scores, result).tolist() == [True, False]  # 0.1 < 0.15 is abnormal


def test_score_images_default_is_masked_mse():
    x = torch.zeros(1, 1, 4, 4)
    recon = torch.zeros_like(x)
    recon[..., 0, 0] = 2.0
    mask = torch.zeros_like(x)
    mask[..., :2, :2] = 1
    assert score_images(recon, x, mask).item() == pytest.approx(1.0)  # 4 / 4 pixels
    spec = ScoreSpec(reduction="max")
    assert score_images(recon, x, None, spec).item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="unknown scoring keys"):
        ScoreSpec.from_config({"metod": "error"})


# --- thresholds ------------------------------------------------------------------------------------------


def _no_warnings():
    return warnings.catch_warnings(record=True)


def test_percentile_matches_numpy_and_is_quiet_on_a_good_set():
    normal = np.arange(100.0)
    with _no_warnings() as caught:
        warnings.simplefilter("always")
        r = calibrate_threshold(normal, "percentile", q=95)
    assert not caught and r.warnings == []
    assert r.value == np.percentile(normal, 95) and r.strategy == "percentile" and r.direction == "above"
    assert calibrate_threshold(normal, "percentile").value == np.percentile(normal, 99)
    # 'below': the lower tail
    below = calibrate_threshold(normal, "percentile", q=95, direction="below")
    assert below.value == pytest.approx(np.percentile(normal, 5)) and below.direction == "below"


def test_mean_std():
    normal = np.arange(100.0)
    r = calibrate_threshold(normal, "mean_std", k=2)
    assert r.value == pytest.approx(normal.mean() + 2 * normal.std())
    assert calibrate_threshold(normal, "mean_std").value == pytest.approx(normal.mean() + 3 * normal.std())
    below = calibrate_threshold(normal, "mean_std", k=2, direction="below")
    assert below.value == pytest.approx(normal.mean() - 2 * normal.std())


def test_max_f1_picks_the_separating_threshold():
    normal, abnormal = np.arange(30.0), np.arange(40.0, 50.0)
    r = calibrate_threshold(normal, "max_f1", abnormal_scores=abnormal)
    assert r.strategy == "max_f1" and 29 < r.value < 40
    pred = apply_threshold(np.concatenate([normal, abnormal]), r)
    assert pred.tolist() == [False] * 30 + [True] * 10
    # 'below' scores (abnormal low): mirrored
    rb = calibrate_threshold(-normal, "max_f1", abnormal_scores=-abnormal, direction="below")
    assert -40 < rb.value < -29
    assert apply_threshold(np.concatenate([-normal, -abnormal]), rb).tolist() == [False] * 30 + [True] * 10


def test_max_f1_reaches_the_best_f1_on_overlapping_sets():
    rng = np.random.default_rng(0)
    normal, abnormal = rng.normal(0, 1, 200), rng.normal(1.5, 1, 60)
    r = calibrate_threshold(normal, "max_f1", abnormal_scores=abnormal)
    scores = np.concatenate([normal, abnormal])
    labels = np.r_[np.zeros(200), np.ones(60)]
    p, rec, _ = precision_recall_curve(labels, scores)
    best = np.nanmax(2 * p * rec / (p + rec))
    assert evaluate(scores, labels, r)["f1"] == pytest.approx(best)


def test_max_f1_without_anomalies_falls_back_with_a_warning():
    normal = np.arange(100.0)
    for abnormal in (None, []):
        with pytest.warns(CalibrationWarning, match="falling back to percentile"):
            r = calibrate_threshold(normal, "max_f1", abnormal_scores=abnormal, q=95)
        assert r.strategy == "percentile" and r.value == np.percentile(normal, 95)
        assert any("falling back" in w for w in r.warnings)


def test_small_or_flat_calibration_sets_warn():
    with pytest.warns(CalibrationWarning, match="only 5 normal"):
        r = calibrate_threshold(np.arange(5.0), "percentile")
    assert len(r.warnings) == 1
    with pytest.warns(CalibrationWarning, match="no spread"):
        r = calibrate_threshold(np.full(50, 0.3), "mean_std")
    assert r.value == pytest.approx(0.3) and "no spread" in r.warnings[0]
    # the minimum is configurable
    with _no_warnings() as caught:
        warnings.simplefilter("always")
        calibrate_threshold(np.arange(5.0), "percentile", min_count=5)
    assert not caught


def test_calibration_input_errors():
    with pytest.warns(CalibrationWarning, match="non-finite"):
        r = calibrate_threshold(np.r_[np.arange(30.0), np.nan], "percentile", q=100)
    assert r.value == 29.0
    with pytest.raises(ValueError, match="no finite normal"):
        calibrate_threshold([], "percentile")
    with pytest.raises(ValueError, match="unknown threshold strategy"):
        calibrate_threshold(np.arange(30.0), "otsu")
    with pytest.raises(ValueError, match="unknown parameters"):
        calibrate_threshold(np.arange(30.0), "percentile", k=3)
    with pytest.raises(ValueError, match="needs a value"):
        calibrate_threshold(np.arange(30.0), "fixed")


def test_threshold_yamls_calibrate():
    normal = np.arange(100.0)
    for name in ("percentile", "mean_std", "max_f1"):
        cfg = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
        r = calibrate_from_config(normal, cfg, abnormal_scores=np.arange(200.0, 210.0))
        assert r.strategy == name and np.isfinite(r.value)
    fixed = OmegaConf.load(CONF / "fixed.yaml")
    fixed.value = 0.15
    r = calibrate_from_config([], OmegaConf.to_container(fixed), direction="below")
    assert (r.value, r.strategy, r.direction) == (0.15, "fixed", "below")
    assert ThresholdResult(**r.to_dict()) == r  # round-trips through json-able dicts


def test_apply_threshold_directions_and_ties():
    s = np.array([0.1, 0.5, 0.9])
    assert apply_threshold(s, 0.5).tolist() == [False, False, True]
    assert apply_threshold(s, 0.5, "below").tolist() == [True, False, False]
    assert apply_threshold(torch.tensor(s), ThresholdResult(0.5, "fixed", [], "below")).tolist() == [
        True,
        False,
        False,
    ]


# --- metrics ---------------------------------------------------------------------------------------------


SCORES = np.array([0.10, 0.40, 0.35, 0.80, 0.20, 0.90, 0.55, 0.05, 0.70, 0.30])
LABELS = np.array([0, 0, 1, 1, 0, 1, 0, 0, 1, 1])


def test_evaluate_equals_scikit_learn():
    m = evaluate(SCORES, LABELS, 0.5)
    pred = (SCORES > 0.5).astype(int)
    tn, fp, fn, tp = confusion_matrix(LABELS, pred).ravel()
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (tp, fp, tn, fn)
    assert m["auroc"] == roc_auc_score(LABELS, SCORES)
    assert m["auprc"] == average_precision_score(LABELS, SCORES)
    assert m["f1"] == f1_score(LABELS, pred)
    assert m["sensitivity"] == recall_score(LABELS, pred)
    assert m["specificity"] == recall_score(LABELS, pred, pos_label=0)
    assert m["precision"] == precision_score(LABELS, pred)
    assert m["accuracy"] == accuracy_score(LABELS, pred)
    assert (m["n_normal"], m["n_abnormal"]) == (5, 5)


def test_evaluate_below_direction_ranks_on_negated_scores():
    m = evaluate(-SCORES, LABELS, ThresholdResult(-0.5, "fixed", [], "below"))
    ref = evaluate(SCORES, LABELS, 0.5)
    for key in ("auroc", "auprc", "f1", "tp", "fp", "tn", "fn"):
        assert m[key] == ref[key], key
    assert evaluate(-SCORES, LABELS, -0.5, direction="below")["auroc"] == ref["auroc"]


def test_single_class_metrics_are_nan_not_errors():
    with _no_warnings() as caught:
        warnings.simplefilter("always")
        m = evaluate(SCORES, np.zeros(10, int), 0.5)
    assert not [w for w in caught if "fbad" in str(w.filename)]
    assert np.isnan(m["auroc"]) and np.isnan(m["auprc"]) and np.isnan(m["sensitivity"])
    assert m["specificity"] == 0.6 and m["fp"] == 4 and m["n_abnormal"] == 0
    m = evaluate(SCORES, np.ones(10, int), 2.0)  # nothing flagged, all abnormal
    assert np.isnan(m["auroc"]) and np.isnan(m["precision"]) and m["sensitivity"] == 0.0


def test_evaluate_rejects_bad_input():
    with pytest.raises(ValueError, match="not finite"):
        evaluate([0.1, np.nan], [0, 1], 0.5)
    with pytest.raises(ValueError, match="labels"):
        evaluate([0.1, 0.2], [0, 2], 0.5)
    with pytest.raises(ValueError, match="2 scores but 3"):
        evaluate([0.1, 0.2], [0, 1, 1], 0.5)


def test_curve_helpers_match_scikit_learn():
    roc = roc_curve_data(SCORES, LABELS)
    fpr, tpr, thr = roc_curve(LABELS, SCORES)
    np.testing.assert_array_equal(roc["fpr"], fpr)
    np.testing.assert_array_equal(roc["tpr"], tpr)
    np.testing.assert_array_equal(roc["thresholds"], thr)
    pr = pr_curve_data(SCORES, LABELS)
    p, r, t = precision_recall_curve(LABELS, SCORES)
    np.testing.assert_array_equal(pr["precision"], p)
    np.testing.assert_array_equal(pr["recall"], r)
    np.testing.assert_array_equal(pr["thresholds"], t)
    below = roc_curve_data(-SCORES, LABELS, "below")
    np.testing.assert_array_equal(below["tpr"], tpr)
    np.testing.assert_array_equal(below["thresholds"], -thr)  # back in the scores' own units


def test_detection_rate_by_group():
    groups = ["cyst", "cyst", "cyst", "vm", "vm", "normal", "normal"]
    preds = [True, False, True, True, True, True, False]
    labels = [1, 1, 1, 1, 1, 0, 0]
    assert detection_rate_by(groups, preds) == {"cyst": 2 / 3, "normal": 0.5, "vm": 1.0}
    assert detection_rate_by(groups, preds, labels) == {"cyst": 2 / 3, "vm": 1.0}
    with pytest.raises(ValueError, match="groups"):
        detection_rate_by(groups[:3], preds)


def test_pixel_auroc_vs_scikit_learn_with_regions_and_subsampling():
    rng = np.random.default_rng(0)
    truth = np.zeros((4, 1, 32, 32), bool)
    truth[:, :, 10:16, 10:16] = True
    maps = rng.random(truth.shape) + 0.5 * truth
    region = np.zeros_like(truth)
    region[:, :, 4:28, 4:28] = True
    assert pixel_auroc(maps, truth) == roc_auc_score(truth.ravel(), maps.astype(np.float32).ravel())
    inside = region.ravel()
    want = roc_auc_score(truth.ravel()[inside], maps.astype(np.float32).ravel()[inside])
    assert pixel_auroc(torch.from_numpy(maps), torch.from_numpy(truth), region) == want
    sub = pixel_auroc(maps, truth, max_pixels=1000)
    assert sub == pixel_auroc(maps, truth, max_pixels=1000)  # deterministic
    assert abs(sub - want) < 0.05
    assert np.isnan(pixel_auroc(maps, np.zeros_like(truth)))
