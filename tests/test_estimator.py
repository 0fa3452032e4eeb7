import pytest
import torch
import torch.nn.functional as F

from albsnn.errors import ConfigError
from albsnn.estimator import BUDGET_TOLERANCE, BinarizationPolicy, Measured, Probe, Taylor, WeightError
from albsnn.models import build_model
from albsnn.storage import fp32_bytes, storage_bytes


def _model_with_harmless_and_destructive_layers():
    """conv2 already holds +-alpha weights (binarizing changes nothing); conv3/conv4 are spread
    over many magnitudes (binarizing rewrites them)."""
    torch.manual_seed(0)
    net = build_model(arch="tiny", time_steps=2)
    with torch.no_grad():
        w2 = net.conv2.weight
        w2.copy_(0.05 * torch.sign(torch.randn_like(w2)))
        for conv in (net.conv3, net.conv4):
            conv.weight.copy_(torch.randn_like(conv.weight) ** 3 * 0.05)
    return net


def _reduction(net):
    full = fp32_bytes(net)
    return lambda m: 1 - storage_bytes(m) / full


def _run_batches(net, estimator, n=3):
    estimator.on_epoch_start()
    layers = BinarizationPolicy(estimator).candidates(net)
    for i in range(n):
        torch.manual_seed(i)
        x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
        net.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        estimator.after_backward(layers, loss)


@pytest.mark.parametrize("estimator, threshold", [(WeightError(), 5.0), (Taylor(), 1e-7)])
def test_policy_binarizes_only_the_harmless_layer(estimator, threshold):
    net = _model_with_harmless_and_destructive_layers()
    _run_batches(net, estimator)
    policy = BinarizationPolicy(estimator, threshold=threshold, warmup=1)
    assert policy.step(1, net, _reduction(net)) == ["conv2"]
    # ...and the decision is what it claims: conv2's output is unchanged, conv3's is not.
    for conv, harmless in ((net.conv2, True), (net.conv3, False)):
        x = torch.randn(4, conv.in_channels, 8, 8)
        fp = F.conv2d(x, conv.weight, padding=1)
        binary = F.conv2d(x, conv.binarized_weight(), padding=1)
        assert torch.allclose(fp, binary, atol=1e-6) == harmless


def test_history_records_every_candidate_every_epoch():
    net = _model_with_harmless_and_destructive_layers()
    policy = BinarizationPolicy(WeightError(), threshold=5.0, warmup=2)
    for epoch in (1, 2):
        policy.step(epoch, net, _reduction(net))
    rows = [(h.epoch, h.layer, h.binary, h.decision) for h in policy.history]
    assert rows == [
        (1, "conv2", False, False),
        (1, "conv3", False, False),
        (1, "conv4", False, False),
        (2, "conv2", True, True),
        (2, "conv3", False, True),
        (2, "conv4", False, True),
    ]
    assert policy.history[3].estimate == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "warmup, interval, decision_epochs",
    [(2, 1, [2, 3, 4, 5, 6]), (2, 2, [2, 4, 6]), (0, 3, [3, 6]), (5, 1, [5, 6])],
)
def test_decisions_start_after_warmup_every_interval(warmup, interval, decision_epochs):
    policy = BinarizationPolicy(WeightError(), warmup=warmup, interval=interval)
    assert [e for e in range(1, 7) if policy.is_decision_epoch(e)] == decision_epochs


def test_reversible_layer_returns_to_full_precision_above_hysteresis():
    net = _model_with_harmless_and_destructive_layers()
    net.conv3.set_binary(True)
    # conv3's estimate (~50%) exceeds 10 * (1 + 0.2): it goes back; without reversible it stays, and
    # the cap then binds: the set {conv3} already costs more than the threshold, so conv2 is not added.
    for reversible, expected in ((True, ["conv2"]), (False, ["conv3"])):
        net.conv3.set_binary(True)
        net.conv2.set_binary(False)
        policy = BinarizationPolicy(WeightError(), threshold=10.0, warmup=1, reversible=reversible)
        assert policy.step(1, net, _reduction(net)) == expected


def _subset_reductions(net, names):
    """Storage reduction of every subset of ``names`` binarized (the rest full precision)."""
    import itertools

    reduction = _reduction(net)
    out = {}
    for k in range(len(names) + 1):
        for subset in itertools.combinations(names, k):
            for n in names:
                getattr(net, n).set_binary(n in subset)
            out[subset] = reduction(net)
    for n in names:
        getattr(net, n).set_binary(False)
    return out


@pytest.mark.parametrize("target", [0.2, 0.5, 0.7])
def test_budget_mode_picks_the_cheapest_subset_closest_to_the_target(target):
    # Rule: among the subsets whose storage reduction is closest to the budget (within
    # BUDGET_TOLERANCE), adaptive takes the one with the lowest summed estimate.
    net = _model_with_harmless_and_destructive_layers()
    names = ["conv2", "conv3", "conv4"]
    reductions = _subset_reductions(net, names)
    best = min(abs(r - target) for r in reductions.values())
    family = {s for s, r in reductions.items() if abs(r - target) <= best + BUDGET_TOLERANCE}
    policy = BinarizationPolicy(WeightError(), budget=target, warmup=1)
    binary = tuple(policy.step(1, net, _reduction(net)))
    estimates = policy.last_estimates()
    assert binary in family
    assert sum(estimates[n] for n in binary) == min(sum(estimates[n] for n in s) for s in family)


FMNIST_DEEP = dict(arch="fmnist_deep", input_size=(28, 28), width=0.25)


@pytest.mark.parametrize("seed", range(6))
def test_random_mode_draws_a_storage_matched_subset(seed):
    # The control for adaptive: same storage as the budget, layers by chance. fmnist_deep has three
    # equal-size candidates (conv4-conv6), so at budget 0.5 the matched family is their three pairs.
    net = build_model(**FMNIST_DEEP)
    policy = BinarizationPolicy(WeightError(), mode="random", budget=0.5, warmup=1, seed=seed)
    binary = policy.step(1, net, _reduction(net))
    assert binary in (["conv4", "conv5"], ["conv4", "conv6"], ["conv5", "conv6"])
    again = build_model(**FMNIST_DEEP)
    twin = BinarizationPolicy(WeightError(), mode="random", budget=0.5, warmup=1, seed=seed)
    assert twin.step(1, again, _reduction(again)) == binary  # seeded


def test_random_mode_uses_more_than_one_subset_over_seeds_and_decides_once():
    drawn = set()
    for seed in range(8):
        net = build_model(**FMNIST_DEEP)
        policy = BinarizationPolicy(WeightError(), mode="random", budget=0.5, warmup=1, seed=seed)
        drawn.add(tuple(policy.step(1, net, _reduction(net))))
        assert not policy.is_decision_epoch(2)
    assert len(drawn) >= 2


def test_random_mode_without_budget_is_refused():
    with pytest.raises(ConfigError, match="budget"):
        BinarizationPolicy(WeightError(), mode="random")


def test_budget_above_every_subset_but_within_reach_binarizes_every_candidate():
    net = _model_with_harmless_and_destructive_layers()
    policy = BinarizationPolicy(WeightError(), budget=0.99, warmup=1)  # all three: 0.943
    assert policy.step(1, net, _reduction(net)) == ["conv2", "conv3", "conv4"]


@pytest.mark.parametrize("mode", ["adaptive", "random", "deepest", "largest"])
def test_budget_no_subset_comes_near_is_refused_before_training(mode):
    # tiny's subsets reduce storage by 0, .07, .29, .36, .58, .65, .87, .94: 0.47 is > BUDGET_REACH
    # from each, so no layer set "meets" it; the check names the reachable values.
    net = build_model(arch="tiny")
    policy = BinarizationPolicy(WeightError(), mode=mode, budget=0.47, warmup=1)
    with pytest.raises(ConfigError, match=r"budget 0.47: no subset .* 0\.362, 0\.581"):
        policy.check(net, _reduction(net))


def test_first_conv_and_classifier_are_candidates_only_on_request():
    net = build_model(arch="tiny")
    assert list(BinarizationPolicy(WeightError()).candidates(net)) == ["conv2", "conv3", "conv4"]
    both = BinarizationPolicy(WeightError(), binarize_first=True, binarize_classifier=True)
    assert list(both.candidates(net)) == ["conv1", "conv2", "conv3", "conv4", "classifier"]


def test_policy_is_deterministic():
    runs = []
    for _ in range(2):
        net = _model_with_harmless_and_destructive_layers()
        est = Taylor()
        _run_batches(net, est)
        policy = BinarizationPolicy(est, threshold=0.01, warmup=1)
        policy.step(1, net, _reduction(net))
        runs.append([(h.layer, h.estimate, h.binary) for h in policy.history])
    assert runs[0] == runs[1]


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"threshold": -0.1}, "threshold"),
        ({"threshold": 100.5}, "threshold"),
        ({"budget": 1.0}, "budget"),
        ({"budget": 0.0}, "budget"),
        ({"interval": 0}, "interval"),
        ({"warmup": -1}, "warmup"),
        ({"mode": "some"}, "mode"),
    ],
)
def test_out_of_range_policy_settings_name_the_value(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        BinarizationPolicy(WeightError(), **kwargs)


@pytest.mark.parametrize("last, decision_epochs", [(None, [2, 3, 4, 5, 6]), (4, [2, 3, 4]), (1, [])])
def test_no_decision_after_the_last_decision_epoch(last, decision_epochs):
    # freeze_last: the trainer passes epochs - freeze_last, so every switched layer is trained.
    policy = BinarizationPolicy(WeightError(), warmup=2, last_decision_epoch=last)
    assert [e for e in range(1, 7) if policy.is_decision_epoch(e)] == decision_epochs


# ---- measured -------------------------------------------------------------------------------------


def _agreement_probe(net):
    """A real CalibrationProbe whose labels are the full-precision net's own predictions."""
    from albsnn.calibration import CalibrationProbe

    torch.manual_seed(3)
    x = torch.randn(256, 1, 8, 8)
    with torch.no_grad():
        net.eval()
        y = net(x).argmax(1)
    batches = [(x[:128], y[:128]), (x[128:], y[128:])]
    return CalibrationProbe(net, batches, batches, lambda b: b), batches


def test_measured_ranks_harmless_below_destructive_and_equals_the_direct_drop():
    from albsnn.calibration import bn_state, evaluate, load_bn_state, recalibrate_bn

    net = _model_with_harmless_and_destructive_layers()
    probe, batches = _agreement_probe(net)
    est = Measured()
    est.bind(probe)
    harmless, destructive = est.estimate("conv2", net.conv2), est.estimate("conv3", net.conv3)
    assert harmless == pytest.approx(0.0, abs=1e-9)
    assert destructive > 0.5
    saved = bn_state(net)
    direct = []
    for flag in (False, True):  # the same measurement, by hand
        net.conv3.set_binary(flag)
        recalibrate_bn(net, batches, lambda b: b)
        direct.append(evaluate(net, batches, lambda b: b)[0])
        load_bn_state(net, saved)
    net.conv3.set_binary(False)
    assert destructive == pytest.approx(100 * (direct[0] - direct[1]))
    assert not net.conv3.is_binary  # estimating leaves the state as it was


class _ScriptedProbe(Probe):
    """Per-sample outcomes on 1,000 calibration samples as a function of which of conv2/conv3 are
    binary. ``flips[state] = (worse, better)``: samples the full-precision net gets right and this state
    wrong, and the reverse (full precision: the first 900 right)."""

    N, RIGHT = 1000, 900

    def __init__(self, net, flips):
        self.net, self.flips, self.calls = net, flips, 0

    def state(self):
        return (self.net.conv2.is_binary, self.net.conv3.is_binary)

    def outcomes(self):
        self.calls += 1
        worse, better = self.flips.get(self.state(), (0, 0))
        out = torch.arange(self.N) < self.RIGHT
        out[:worse] = False
        out[self.RIGHT : self.RIGHT + better] = True
        return out


def _two_layer_policy(flips, **kwargs):
    """conv2/conv3 of tiny as the only candidates, measured by a scripted probe."""
    net = build_model(arch="tiny")
    probe = _ScriptedProbe(net, flips)
    est = Measured()
    est.bind(probe)
    policy = BinarizationPolicy(est, warmup=1, **kwargs)
    layers = {n: m for n, m in policy.candidates(net).items() if n != "conv4"}
    policy.candidates = lambda model: layers
    return policy, net, probe


@pytest.mark.parametrize(
    "flips, taken",
    [
        # conv2: 8 samples lost, 5 gained: a 0.3 pp point drop under the 0.5 pp threshold, but 13
        # discordant samples of 1,000 leave its upper bound near 0.9 pp: inside the noise, not taken.
        ({(True, False): (8, 5), (False, True): (40, 0)}, []),
        # the same point drop with no sample gained: the bound is the drop itself, 0.3 pp: taken.
        ({(True, False): (3, 0), (False, True): (40, 0), (True, True): (40, 0)}, ["conv2"]),
        # identical predictions: cost 0, taken.
        ({(True, False): (0, 0), (False, True): (40, 0), (True, True): (40, 0)}, ["conv2"]),
    ],
)
def test_a_layer_is_taken_only_when_the_bound_on_its_cost_is_under_the_threshold(flips, taken):
    policy, net, _ = _two_layer_policy(flips, threshold=0.5)
    assert policy.step(1, net, lambda m: 0.0) == taken


def test_the_cap_binds_on_the_binary_set_measured_jointly():
    # Each layer alone costs 0.2 pp (2 samples lost, bound 0.2 pp); together they lose 8 (0.8 pp).
    # A per-layer threshold of 0.5 pp would take both, one sub-threshold step at a time; the cap on
    # the set against full precision takes one.
    flips = {(True, False): (2, 0), (False, True): (2, 0), (True, True): (8, 0)}
    policy, net, probe = _two_layer_policy(flips, threshold=0.5)
    assert policy.step(1, net, lambda m: 0.0) == ["conv2"]
    decision = policy.decisions[-1]
    assert (decision.layers, decision.cost, decision.upper) == (
        ["conv2"],
        pytest.approx(0.2),
        pytest.approx(0.2),
    )
    assert probe.calls == 4  # one measurement per distinct state: the cache serves the rest


def test_the_cap_is_against_full_precision_across_decision_epochs():
    # Epoch 2 adds nothing to a set that already costs the threshold: the sum cannot creep upwards.
    flips = {(True, False): (5, 0), (False, True): (1, 0), (True, True): (6, 0)}
    policy, net, _ = _two_layer_policy(flips, threshold=0.55, confidence=0.5)
    assert policy.step(1, net, lambda m: 0.0) == ["conv3"]  # conv2 alone: 0.5 pp; with conv3: 0.6
    for epoch in (2, 3):
        policy.estimator.on_epoch_start()
        policy.step(epoch, net, lambda m: 0.0)
    assert all(d.cost <= 0.55 for d in policy.decisions)


@pytest.mark.parametrize(
    "worse, better, n", [(0, 1, 144), (1, 0, 144), (3, 1, 1000), (10, 10, 500), (7, 0, 50)]
)
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_upper_bound_is_the_clopper_pearson_bound_on_the_discordant_split(worse, better, n, confidence):
    from scipy.stats import binomtest

    from albsnn.estimator import upper_bound

    m = worse + better
    # scipy's two-sided exact interval at 1 - 2*alpha has the one-sided upper bound at 1 - alpha.
    p_hi = binomtest(worse, m).proportion_ci(confidence_level=2 * confidence - 1, method="exact").high
    assert upper_bound(worse, better, n, confidence) == pytest.approx(100 * m * (2 * p_hi - 1) / n, rel=1e-6)
    assert upper_bound(worse, better, n, confidence) >= 100 * (worse - better) / n


def test_upper_bound_without_discordant_samples_is_zero():
    from albsnn.estimator import upper_bound

    assert upper_bound(0, 0, 144) == 0.0


class _CountingEstimator(WeightError):
    calls = 0

    def estimate(self, name, layer):
        type(self).calls += 1
        return super().estimate(name, layer)


@pytest.mark.parametrize("mode, budget", [("all", None), ("none", None), ("adaptive", None), ("random", 0.5)])
def test_estimates_are_computed_only_on_decision_epochs(mode, budget):
    net = build_model(**FMNIST_DEEP)
    est = _CountingEstimator()
    _CountingEstimator.calls = 0
    policy = BinarizationPolicy(est, mode=mode, budget=budget, warmup=2, threshold=0.0)
    for epoch in range(1, 5):
        before = _CountingEstimator.calls
        policy.step(epoch, net, _reduction(net))
        assert (_CountingEstimator.calls > before) == policy.is_decision_epoch(epoch), epoch
    assert [d.epoch for d in policy.decisions] == [e for e in range(1, 5) if policy.is_decision_epoch(e)]


FMNIST_CONST = dict(arch="fmnist_const", input_size=(28, 28), width=0.25)


@pytest.mark.parametrize("mode, expected", [("deepest", ["conv5", "conv6"]), ("largest", ["conv2", "conv3"])])
def test_static_controls_pick_what_they_say_from_the_matched_family(mode, expected):
    # fmnist_const: five equal candidates, budget 0.4 = two of them (ten subsets). deepest takes the two
    # deepest; largest ties on size everywhere and breaks ties by the shallowest.
    net = build_model(**FMNIST_CONST)
    policy = BinarizationPolicy(WeightError(), mode=mode, budget=0.4, warmup=1)
    assert policy.step(1, net, _reduction(net)) == expected


def test_largest_prefers_larger_layers_when_sizes_differ():
    net = build_model(arch="tiny")  # conv4 (64x64) > conv3 (32x64) > conv2 (16x32)
    policy = BinarizationPolicy(WeightError(), mode="largest", budget=0.58, warmup=1)
    assert policy.step(1, net, _reduction(net)) == ["conv4"]


def test_random_draws_of_one_seed_are_different_members_of_the_family():
    subsets = []
    for draw in range(10):
        net = build_model(**FMNIST_CONST)
        policy = BinarizationPolicy(WeightError(), mode="random", budget=0.4, warmup=1, seed=3, draw=draw)
        subsets.append(tuple(policy.step(1, net, _reduction(net))))
    assert len(set(subsets)) == 10 and all(len(s) == 2 for s in subsets)


def test_more_draws_than_the_family_has_subsets_is_refused():
    net = build_model(**FMNIST_CONST)
    policy = BinarizationPolicy(WeightError(), mode="random", budget=0.4, warmup=1, draw=10)
    with pytest.raises(ConfigError, match=r"draw 10: .* holds only 10 subset\(s\).*draws 0\.\.9"):
        policy.check(net, _reduction(net))


def test_a_draw_outside_random_mode_is_refused():
    with pytest.raises(ConfigError, match="draw"):
        BinarizationPolicy(WeightError(), mode="deepest", budget=0.4, draw=1)


def test_measured_without_a_probe_is_unknown_and_binarizes_nothing():
    net = _model_with_harmless_and_destructive_layers()
    policy = BinarizationPolicy(Measured(), threshold=100.0, warmup=1)
    assert policy.step(1, net, _reduction(net)) == []
