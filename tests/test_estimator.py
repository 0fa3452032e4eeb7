import pytest
import torch
import torch.nn.functional as F

from albsnn.errors import ConfigError
from albsnn.estimator import BinarizationPolicy, Taylor, WeightError
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


@pytest.mark.parametrize("estimator, threshold", [(WeightError(), 0.05), (Taylor(), 1e-9)])
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
    policy = BinarizationPolicy(WeightError(), threshold=0.05, warmup=2)
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
    # conv3's estimate (~0.5) exceeds 0.1 * (1 + 0.2): it goes back; without reversible it stays.
    for reversible, expected in ((True, ["conv2"]), (False, ["conv2", "conv3"])):
        net.conv3.set_binary(True)
        net.conv2.set_binary(False)
        policy = BinarizationPolicy(WeightError(), threshold=0.1, warmup=1, reversible=reversible)
        assert policy.step(1, net, _reduction(net)) == expected


@pytest.mark.parametrize("target", [0.2, 0.5, 0.7])
def test_budget_mode_meets_its_target_with_the_cheapest_layers(target):
    net = _model_with_harmless_and_destructive_layers()
    reduction = _reduction(net)
    policy = BinarizationPolicy(WeightError(), budget=target, warmup=1)
    binary = policy.step(1, net, reduction)
    assert reduction(net) >= target
    # Minimal: undoing the last (most damaging) layer chosen drops below the target.
    estimates = policy.last_estimates()
    last = max(binary, key=lambda n: (estimates[n], n))
    getattr(net, last).set_binary(False)
    assert reduction(net) < target
    assert binary[0] == "conv2"  # the harmless one is always taken first


def test_budget_that_cannot_be_met_binarizes_every_candidate():
    net = _model_with_harmless_and_destructive_layers()
    policy = BinarizationPolicy(WeightError(), budget=0.99, warmup=1)
    assert policy.step(1, net, _reduction(net)) == ["conv2", "conv3", "conv4"]


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
