"""Paired contrasts (cell - control over common seeds) against scipy, their power line, and edge cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from albsnn.report.ablation import holm, paired_contrasts

# test accuracy (%) per seed, constructed: adaptive beats random clearly, deepest is within noise
VALUES = {
    "adaptive": {0: 91.2, 1: 90.5, 2: 91.8, 3: 90.9, 4: 91.5},
    "random": {0: 89.3, 1: 88.0, 2: 89.9, 3: 88.4, 4: 89.6},
    "deepest": {0: 91.0, 1: 90.9, 2: 91.5, 3: 90.4, 4: 91.7},
}
PAIRS = [("adaptive", "random"), ("adaptive", "deepest")]


def _arrays(cell, control, values=VALUES):
    seeds = sorted(set(values[cell]) & set(values[control]))
    return [values[cell][s] for s in seeds], [values[control][s] for s in seeds]


def _power_nct(effect, n, sd, alpha=0.05):
    # the definition: P(|T| > t_crit) with T ~ noncentral t(n - 1, effect * sqrt(n) / sd)
    df, nc = n - 1, effect * np.sqrt(n) / sd
    t_crit = stats.t.ppf(1 - alpha / 2, df)
    return stats.nct.sf(t_crit, df, nc) + stats.nct.cdf(-t_crit, df, nc)


@pytest.mark.parametrize("cell, control", PAIRS)
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_interval_and_p_equal_scipy_ttest_rel(cell, control, confidence):
    c = paired_contrasts(VALUES, [(cell, control)], confidence=confidence).contrasts[0]
    a, b = _arrays(cell, control)
    res = stats.ttest_rel(a, b)
    ci = res.confidence_interval(confidence)
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high))
    assert c.p == pytest.approx(res.pvalue)


def test_mean_and_sd_are_of_the_per_seed_differences():
    c = paired_contrasts(VALUES, [("adaptive", "random")]).contrasts[0]
    d = np.subtract(*_arrays("adaptive", "random"))
    assert (c.n, c.seeds) == (5, (0, 1, 2, 3, 4))
    assert (c.mean, c.sd) == pytest.approx((d.mean(), d.std(ddof=1)))


def test_only_the_seeds_both_cells_have_are_paired():
    values = {"adaptive": VALUES["adaptive"], "random": {s: v for s, v in VALUES["random"].items() if s != 2}}
    c = paired_contrasts(values, [("adaptive", "random")]).contrasts[0]
    a, b = _arrays("adaptive", "random", values)
    assert c.seeds == (0, 1, 3, 4) and c.p == pytest.approx(stats.ttest_rel(a, b).pvalue)


def test_holm_is_applied_across_the_pairs_of_one_call():
    info = paired_contrasts(VALUES, PAIRS)
    raw = [stats.ttest_rel(*_arrays(*pair)).pvalue for pair in PAIRS]
    assert [c.p_holm for c in info.contrasts] == pytest.approx(holm(raw))


@pytest.mark.parametrize("cell, control", PAIRS)
def test_at_the_mde_the_noncentral_t_power_is_the_requested_power(cell, control):
    c = paired_contrasts(VALUES, [(cell, control)]).contrasts[0]
    assert _power_nct(c.mde, c.n, c.sd) == pytest.approx(0.8, abs=1e-6)


def test_at_the_mde_a_simulated_paired_t_test_rejects_80_percent_of_the_time():
    # Monte Carlo, independent of scipy's nct: normal differences with the measured sd, mean = mde
    c = paired_contrasts(VALUES, [("adaptive", "deepest")]).contrasts[0]
    rng = np.random.default_rng(0)
    d = rng.normal(c.mde, c.sd, size=(200_000, c.n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / np.sqrt(c.n))
    rejected = np.abs(t) > stats.t.ppf(0.975, c.n - 1)
    assert rejected.mean() == pytest.approx(0.8, abs=0.01)


def test_seeds_needed_reach_the_power_and_one_seed_fewer_does_not():
    c = paired_contrasts(VALUES, [("adaptive", "deepest")], effects=(0.5,)).contrasts[0]
    n = c.seeds_needed[0.5]
    assert _power_nct(0.5, n, c.sd) >= 0.8 > _power_nct(0.5, n - 1, c.sd)


def test_seeds_needed_fall_as_the_effect_grows():
    effects = (0.25, 0.5, 1.0, 2.0)
    c = paired_contrasts(VALUES, [("adaptive", "deepest")], effects=effects).contrasts[0]
    needed = [c.seeds_needed[e] for e in effects]
    assert needed == sorted(needed, reverse=True) and needed[0] > needed[-1]


def test_seeds_needed_beyond_the_search_cap_are_none():
    c = paired_contrasts(VALUES, [("adaptive", "deepest")], effects=(1e-4,)).contrasts[0]
    assert c.seeds_needed == {1e-4: None}


@pytest.mark.parametrize("shift, p", [(0.0, 1.0), (1.5, 0.0)])
def test_equal_differences_give_a_point_interval_and_zero_mde(shift, p):
    # sd = 0: scipy's t is undefined (or infinite); nothing crashes and the numbers say so
    values = {"a": {s: 90.0 + s + shift for s in range(4)}, "b": {s: 90.0 + s for s in range(4)}}
    c = paired_contrasts(values, [("a", "b")]).contrasts[0]
    assert (c.mean, c.sd, c.ci_low, c.ci_high, c.p, c.mde) == pytest.approx((shift, 0, shift, shift, p, 0))
    assert c.seeds_needed == {0.5: 2, 1.0: 2}


@pytest.mark.parametrize(
    "values, margin, verdict",
    [
        (VALUES, 0.5, "significant (Holm)"),  # adaptive - random: +2 pp, tight
        ({"a": {0: 90.0, 1: 90.1, 2: 89.9, 3: 90.05}, "b": {0: 90.0, 1: 90.0, 2: 90.0, 3: 90.0}}, 0.5,
         "equivalent within ±0.5"),  # interval well inside ±0.5
        ({"a": {0: 91.0, 1: 89.0, 2: 90.5}, "b": {0: 90.0, 1: 90.0, 2: 90.0}}, 0.5, "no evidence"),
    ],
)  # fmt: skip
def test_verdict_follows_holm_then_the_equivalence_margin(values, margin, verdict):
    pair = ("adaptive", "random") if "adaptive" in values else ("a", "b")
    assert paired_contrasts(values, [pair], margin=margin).contrasts[0].verdict == verdict


def test_a_pair_with_a_missing_cell_raises_naming_it_and_the_cells_present():
    with pytest.raises(ValueError, match=r"'deeepest'.*cells present: 'adaptive', 'random', 'deepest'"):
        paired_contrasts(VALUES, [("adaptive", "deeepest")])


def test_one_common_seed_tests_nothing():
    values = {"a": {0: 91.0}, "b": {0: 90.0, 1: 89.0}}
    c = paired_contrasts(values, [("a", "b")]).contrasts[0]
    assert (c.n, c.mean, c.p, c.p_holm, c.ci_low, c.mde) == (1, 1.0, None, None, None, None)
    assert c.verdict == "no evidence"


def test_markdown_has_one_row_per_contrast_and_the_dict_is_json():
    info = paired_contrasts(VALUES, PAIRS)
    lines = info.to_markdown().strip().splitlines()
    assert lines[0].startswith(
        "| contrast | n | mean diff (pp) | 95% CI | p | Holm p | detectable at 80% power"
    )
    assert "seeds for 0.5/1.0 pp" in lines[0] and len(lines) == 2 + len(PAIRS)
    mean = np.mean(np.subtract(*_arrays("adaptive", "random")))
    assert lines[2].startswith(f"| adaptive − random | 5 | {mean:+.2f} |")
    back = json.loads(json.dumps(info.to_dict()))
    assert back["contrasts"][0]["seeds_needed"].keys() == {"0.5", "1.0"} and back["power"] == 0.8
