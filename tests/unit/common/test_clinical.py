"""Clinical evaluation: properties of the intervals, calibration, recalibration, operating points,
subgroups and the paired comparison (simulations with a known truth, not shapes)."""

import numpy as np
import pytest
from scipy import special, stats
from sklearn.metrics import brier_score_loss

from components.common.clinical import bootstrap, calibration, paired, subgroups, thresholds

pytestmark = pytest.mark.unit


def binormal(rng, n_pos, n_neg, shift=1.0):
    """Scores N(shift, 1) for positives, N(0, 1) for negatives: true AUC = Φ(shift / √2)."""
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    return y, np.r_[rng.normal(shift, 1, n_pos), rng.normal(0, 1, n_neg)]


def test_bootstrap_intervals_cover_the_truth_at_about_the_nominal_rate():
    rng = np.random.default_rng(11)
    true_auc, true_sens, true_spec = stats.norm.cdf(1 / np.sqrt(2)), stats.norm.cdf(0.5), stats.norm.cdf(0.5)
    covered = {"roc_auc": 0, "sensitivity": 0, "specificity": 0}
    sims = 300
    for sim in range(sims):
        y, s = binormal(rng, 80, 120)
        cis = bootstrap.intervals(y, s, 0.5, n_resamples=300, seed=sim,
                                  statistics={k: bootstrap.HEADLINE[k] for k in covered})
        for name, truth in zip(covered, (true_auc, true_sens, true_spec), strict=True):
            covered[name] += cis[name].covers(truth)
    rates = {k: v / sims for k, v in covered.items()}
    # nominal 0.95; 300 simulations put the binomial sd of a rate at ~0.013
    assert all(0.90 <= r <= 0.985 for r in rates.values()), rates


def test_bootstrap_values_match_sklearn_and_intervals_are_seeded():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y, s = binormal(rng, 40, 60)
    p = special.expit(s)
    a = bootstrap.intervals(y, p, 0.5, n_resamples=200, seed=4)
    assert a["roc_auc"].value == pytest.approx(roc_auc_score(y, p))
    assert a["brier"].value == pytest.approx(brier_score_loss(y, p))
    assert a == bootstrap.intervals(y, p, 0.5, n_resamples=200, seed=4)
    assert a != bootstrap.intervals(y, p, 0.5, n_resamples=200, seed=5)
    assert all(i.lower <= i.value <= i.upper for i in a.values())
    with pytest.raises(ValueError, match="both classes"):
        bootstrap.intervals(np.ones(5), np.full(5, 0.5), 0.5)


def calibrated(rng, n):
    p = rng.uniform(0.02, 0.98, n)
    return (rng.random(n) < p).astype(int), p


def test_a_calibrated_model_has_ece_near_zero_and_a_miscalibrated_one_is_detected():
    rng = np.random.default_rng(1)
    y, p = calibrated(rng, 20000)
    good = calibration.summary(y, p)
    assert good["ece"] < 0.02
    assert good["calibration_slope"] == pytest.approx(1, abs=0.08)
    assert good["calibration_intercept"] == pytest.approx(0, abs=0.05)
    overconfident = special.expit(2.5 * special.logit(p))
    bad = calibration.summary(y, overconfident)
    assert bad["ece"] > 0.08 and bad["calibration_slope"] < 0.5
    underestimating = special.expit(special.logit(p) - 1.0)  # risk too low everywhere
    assert calibration.summary(y, underestimating)["calibration_intercept"] == pytest.approx(1.0, abs=0.1)


DISTORTIONS = {"calibrated": lambda z: z, "overconfident": lambda z: 2.5 * z, "underconfident": lambda z: 0.4 * z,
               "risk too high": lambda z: z + 1.2, "S-shaped": lambda z: np.sign(z) * z ** 2}
MISCALIBRATED_BY_A_SIGMOID = ("overconfident", "underconfident", "risk too high")  # what Platt undoes exactly
# Chosen on 300 held-out scores, a map can be worse on new patients than leaving the scores alone: with a model
# that is already calibrated (or S-shaped), noise in 300 scores picks Platt or isotonic now and then, and it
# cost up to 0.013 Brier in 60 seeds (mean 0.001). 0.015 bounds that: under a tenth of these scores' Brier (~0.17).
NEW_PATIENT_TOLERANCE = 0.015


def test_recalibration_does_not_worsen_brier_on_new_patients_beyond_a_small_tolerance():
    gain = {name: [] for name in DISTORTIONS}  # Brier on new patients: uncalibrated minus recalibrated
    for name, distort in DISTORTIONS.items():
        for seed in range(20):
            rng = np.random.default_rng(seed)
            y, p = calibrated(rng, 300)  # the held-out part the map is fitted on
            scores = special.expit(distort(special.logit(p)))
            chosen = calibration.choose(y, scores, seed=seed)
            assert chosen.n == 300 and chosen.brier_after == pytest.approx(brier_score_loss(y, chosen.apply(scores)))
            assert chosen.brier_after <= chosen.brier_before + 1e-12  # where it was fitted: kept only if better
            y_new, p_new = calibrated(rng, 5000)  # new patients from the same distribution
            new = special.expit(distort(special.logit(p_new)))
            gain[name].append(brier_score_loss(y_new, new) - brier_score_loss(y_new, chosen.apply(new)))
    worst = {name: min(g) for name, g in gain.items()}
    assert all(w >= -NEW_PATIENT_TOLERANCE for w in worst.values()), worst
    assert all(np.mean(g) >= -0.003 for g in gain.values()), {k: np.mean(g) for k, g in gain.items()}
    # and where the model is miscalibrated the map helps new patients on every seed, not only on average
    assert all(min(gain[name]) > 0 and np.mean(gain[name]) > 0.01 for name in MISCALIBRATED_BY_A_SIGMOID), worst


def test_recalibration_never_reverses_the_ranking_of_a_model_worse_than_chance():
    rng = np.random.default_rng(8)
    y, p = calibrated(rng, 400)
    chosen = calibration.choose(y, 1 - p)  # Platt would fit a negative slope here
    assert chosen.method != calibration.PLATT or chosen.a > 0
    calibration.to_contract(chosen, 0.9, 0.5)  # the bundle contract accepts it


def test_recalibration_repairs_a_miscalibrated_model_on_new_patients():
    rng = np.random.default_rng(7)
    y_fit, p_fit = calibrated(rng, 600)
    y_new, p_new = calibrated(rng, 5000)
    distort = lambda p: special.expit(2.5 * special.logit(p) + 0.8)  # noqa: E731
    chosen = calibration.choose(y_fit, distort(p_fit))
    assert chosen.method in (calibration.PLATT, calibration.ISOTONIC)
    assert calibration.ece(y_new, chosen.apply(distort(p_new))) < 0.5 * calibration.ece(y_new, distort(p_new))
    assert np.all(np.diff(chosen.apply(np.linspace(0.001, 0.999, 200))) >= 0)  # monotone: ranking (AUC) kept


def test_the_threshold_for_a_target_sensitivity_is_the_highest_that_reaches_it():
    rng = np.random.default_rng(3)
    y, s = binormal(rng, 150, 250)
    p = special.expit(s)
    for target in (0.9, 0.95):
        t = thresholds.threshold_for_sensitivity(y, p, target)
        assert thresholds.at_threshold(y, p, t)[0] >= target
        assert thresholds.at_threshold(y, p, np.nextafter(t, 1))[0] < target
    points = thresholds.operating_points(y, p)
    assert points[0].threshold > points[1].threshold and points[0].specificity > points[1].specificity


def test_the_decision_curve_against_treat_all_and_treat_none():
    rng = np.random.default_rng(4)
    y, s = binormal(rng, 300, 700, shift=2.0)
    curve = thresholds.decision_curve(y, special.expit(s))
    perfect = thresholds.decision_curve(y, y.astype(float))
    assert np.allclose(perfect.model, y.mean())  # every case treated, nobody else
    assert curve.treat_all[0] == pytest.approx(y.mean() - (1 - y.mean()) * 0.01 / 0.99)
    assert np.all(curve.model <= perfect.model + 1e-12) and np.all(curve.treat_none == 0)
    low, high = curve.useful_range()
    assert low < 0.1 and high > 0.5


def test_subgroups_too_small_to_estimate_get_no_numbers():
    rng = np.random.default_rng(5)
    y, s = binormal(rng, 60, 60)
    groups = np.array(["a"] * 100 + ["b"] * 20, dtype=object)
    y[100:] = [1] * 3 + [0] * 17  # group b: 3 positives
    out = {g.group: g for g in subgroups.evaluate("site", groups, y, s, 0.5, n_resamples=100)}
    assert out["b"].too_small and "3 with" in out["b"].too_small and out["b"].intervals == {}
    assert out["a"].too_small is None and set(out["a"].intervals) == set(subgroups.METRICS)
    assert out["a"].n == 100 and out["a"].prevalence == pytest.approx(y[:100].mean())
    flat = subgroups.flat_metrics(list(out.values()))
    assert set(flat) == {f"subgroup.site:a.{m}{b}" for m in subgroups.METRICS for b in ("", ".lower")} | {
        "subgroup.site:a.n", "subgroup.site:a.positives", "subgroup.site:b.n", "subgroup.site:b.positives"}
    assert (flat["subgroup.site:b.n"], flat["subgroup.site:b.positives"]) == (20, 3)  # counted, not estimated


def test_the_paired_comparison_never_promotes_an_identical_challenger():
    rng = np.random.default_rng(6)
    y, s = binormal(rng, 90, 90)
    same = paired.compare_roc_auc(y, s, s.copy(), n_resamples=300)
    assert same.difference.value == 0 and not same.challenger_wins and "identical" in same.reason("3")
    better = paired.compare_roc_auc(y, s + 1.5 * y, s, n_resamples=300)  # more separated on the same patients
    assert better.challenger_wins and better.difference.lower > 0
    noise = s + rng.normal(0, 2, len(s))
    worse = paired.compare_roc_auc(y, noise, s, n_resamples=300)
    assert not worse.challenger_wins and worse.difference.value < 0
    with pytest.raises(ValueError, match="same 180 patients"):
        paired.compare_roc_auc(y, s[:10], s)


def test_the_paired_comparison_draws_the_resamples_it_is_given_and_says_so():
    rng = np.random.default_rng(9)
    y, s = binormal(rng, 60, 60)
    challenger = s + rng.normal(0, 0.7, len(s))
    few, many = (paired.compare_roc_auc(y, challenger, s, n_resamples=n, seed=2) for n in (50, 2000))
    assert (few.n_resamples, many.n_resamples) == (50, 2000)
    assert "paired bootstrap of 2000 resamples" in many.reason("3") and "of 50 resamples" in few.reason("3")
    assert few.difference.value == many.difference.value and few.difference != many.difference
    assert many == paired.compare_roc_auc(y, challenger, s, n_resamples=2000, seed=2)
    assert many != paired.compare_roc_auc(y, challenger, s, n_resamples=2000, seed=3)


def test_the_evaluate_steps_bootstrap_settings_round_trip(tmp_path):
    from components.common.clinical import assessment

    assessment.write_settings(tmp_path, 2000, 7)
    assert assessment.read_settings(tmp_path) == {"bootstrap_resamples": 2000, "seed": 7}
