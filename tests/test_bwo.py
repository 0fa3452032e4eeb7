import pytest
import torch
import torch.nn.functional as F

from albsnn.bwo import DelayedTrigger, FixedEpochTrigger, NeverTrigger, PlateauTrigger, apply_bwo
from albsnn.errors import ConfigError
from albsnn.models import build_model


def _binary_net():
    torch.manual_seed(0)
    net = build_model(arch="tiny")
    net.conv2.set_binary(True)
    net.conv3.set_binary(True)
    return net


def _train_step(net, opt):
    torch.manual_seed(1)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    opt.step()


def test_project_sets_latent_weights_to_alpha_sign_and_resets_optimizer_state():
    net = _binary_net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    _train_step(net, opt)
    expected = net.conv2.binarized_weight().detach().clone()
    untouched = net.conv4.weight.detach().clone()
    assert apply_bwo("project", net, opt) == ["conv2", "conv3"]
    assert torch.equal(net.conv2.weight, expected)
    assert net.conv2.weight not in opt.state
    assert torch.equal(net.conv4.weight, untouched)  # full-precision layers are left alone


def test_off_touches_nothing():
    net = _binary_net()
    before = net.conv2.weight.detach().clone()
    assert apply_bwo("off", net, torch.optim.SGD(net.parameters(), lr=0.1)) == []
    assert torch.equal(net.conv2.weight, before)


@pytest.mark.parametrize("mode", ["scale", "both"])
def test_removed_alpha_modes_are_refused(mode):
    # A learned alpha right before BatchNorm is divided out again: those modes were a random walk.
    net = _binary_net()
    with pytest.raises(ConfigError, match="project"):
        apply_bwo(mode, net, torch.optim.SGD(net.parameters(), lr=0.1))


def test_unknown_mode_names_the_choices():
    net = _binary_net()
    with pytest.raises(ConfigError, match="project"):
        apply_bwo("flip", net, torch.optim.SGD(net.parameters(), lr=0.1))


PLATEAU = [
    # (patience, eps, losses, fires)
    (2, 0.01, [1.0, 0.8, 0.6], False),
    (2, 0.01, [1.0, 0.5, 0.499, 0.498], True),  # < 1% better twice
    (2, 0.01, [1.0, 0.5, 0.499, 0.40], False),  # a real improvement resets the count
    (1, 0.0, [1.0, 1.0], True),
    (3, 0.1, [1.0, 0.95, 0.92, 0.91], True),
    (3, 0.1, [1.0, 0.95, 0.92], False),
]


@pytest.mark.parametrize("patience, eps, losses, fires", PLATEAU)
def test_plateau_trigger(patience, eps, losses, fires):
    assert PlateauTrigger(patience, eps).should_fire(len(losses), losses) is fires


def test_fixed_never_and_delayed_triggers():
    assert FixedEpochTrigger(3).should_fire(3, []) and not FixedEpochTrigger(3).should_fire(2, [])
    assert not NeverTrigger().should_fire(100, [1.0] * 100)
    delayed = DelayedTrigger(PlateauTrigger(1, 0.0), min_epoch=4)
    assert not delayed.should_fire(3, [1.0, 1.0, 1.0])
    assert delayed.should_fire(4, [1.0, 1.0, 1.0, 1.0])


@pytest.mark.parametrize("kwargs", [{"patience": 0}, {"eps": 1.0}, {"eps": -0.1}])
def test_bad_trigger_settings_are_rejected(kwargs):
    with pytest.raises(ConfigError):
        PlateauTrigger(**kwargs)
