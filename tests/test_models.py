import pytest
import torch

from albsnn.binarize import BinaryConv2d
from albsnn.errors import ConfigError
from albsnn.models import ModelConfig, build_model, count_parameters, list_models, register_model

SHAPES = {
    "tiny": (1, 8, 8),
    "fmnist": (1, 28, 28),
    "fmnist_deep": (1, 28, 28),
    "fmnist_fast": (1, 28, 28),
    "fmnist_const": (1, 28, 28),
    "cifar": (3, 32, 32),
    "dvs": (2, 34, 34),
}
# The counts documented in albsnn/models.py (width 1.0, GAP head, 10 classes).
DOCUMENTED = {
    "tiny": 61_402,
    "fmnist": 964_426,
    "fmnist_deep": 2_146_122,
    "cifar": 9_233_866,
    "dvs": 965_002,
    "fmnist_fast": 964_426,
    "fmnist_const": 742_794,
}


def _net(arch, **kw):
    c, h, w = SHAPES[arch]
    return build_model(arch=arch, in_channels=c, input_size=(h, w), **kw)


@pytest.mark.parametrize("arch", list_models())
def test_documented_parameter_counts(arch):
    assert count_parameters(_net(arch)) == DOCUMENTED[arch]


@pytest.mark.parametrize("arch", list_models())
@pytest.mark.parametrize("time_steps", [1, 3])
def test_every_architecture_gives_logits_and_gradients(arch, time_steps):
    net = _net(arch, width=0.25, time_steps=time_steps)
    out = net(torch.randn(2, *SHAPES[arch]))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert net.conv1.weight.grad is not None


def test_fmnist_layers_follow_the_paper_layout():
    convs = [m.out_channels for m in _net("fmnist").modules() if isinstance(m, BinaryConv2d)]
    assert convs == [64, 128, 256, 256]


@pytest.mark.parametrize("width, expected", [(0.5, [32, 64, 128, 128]), (0.25, [16, 32, 64, 64])])
def test_width_multiplies_channels(width, expected):
    convs = [m.out_channels for m in _net("fmnist", width=width).modules() if isinstance(m, BinaryConv2d)]
    assert convs == expected


def test_static_input_equals_the_image_repeated_over_time():
    # Direct encoding computes the first conv once; it must equal feeding T copies as events.
    torch.manual_seed(0)
    net = _net("tiny", time_steps=3).eval()
    x = torch.randn(4, 1, 8, 8)
    assert torch.allclose(net(x), net(x.expand(3, *x.shape)), atol=1e-6)


def test_event_input_with_wrong_number_of_bins_is_refused():
    net = _net("dvs", width=0.25, time_steps=4)
    with pytest.raises(ValueError, match="T=4"):
        net(torch.zeros(2, 1, 2, 34, 34))


def test_fc_head_has_more_parameters_than_gap_head():
    assert count_parameters(_net("fmnist", head="fc")) > count_parameters(_net("fmnist", head="gap"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"arch": "resnet"}, "unknown architecture 'resnet'"),
        ({"time_steps": 0}, "time_steps must be in [1, inf), but got time_steps=0"),
        ({"head": "mlp"}, "unknown head 'mlp'"),
        ({"width": 0}, "width must be in (0, inf), but got width=0"),
    ],
)
def test_bad_model_config_names_the_value(kwargs, message):
    with pytest.raises(ConfigError) as exc:
        ModelConfig(**kwargs)
    assert message in str(exc.value)


def test_duplicate_registration_is_an_error():
    def tiny(c):  # same name as a registered architecture
        return None

    with pytest.raises(ValueError, match="already registered"):
        register_model(tiny)


def test_spike_after_pool_moves_each_pooled_neuron_behind_its_pool():
    layers = [name for name, _ in _net("fmnist", spike_after_pool=True).named_children()]
    assert layers[:10] == ["conv1", "bn1", "lif1", "conv2", "bn2", "pool1", "lif2", "conv3", "bn3", "lif3"]
    assert layers[10:14] == ["conv4", "bn4", "pool2", "lif4"]


@pytest.mark.parametrize("arch", ["fmnist", "fmnist_fast", "dvs"])
def test_spike_after_pool_gives_the_same_logits_at_one_time_step(arch):
    # max(H(x)) == H(max(x)): at T = 1 the reordered network is the same function with 4x fewer neurons
    # behind each pool; training and evaluation of the two can share weights and results.
    torch.manual_seed(0)
    plain = _net(arch, width=0.25, time_steps=1).train()
    moved = _net(arch, width=0.25, time_steps=1, spike_after_pool=True).train()
    moved.load_state_dict(plain.state_dict())
    x = torch.randn(16, *SHAPES[arch]) * 3
    a, b = plain(x), moved(x)
    assert torch.equal(a, b)
    neurons = lambda net: sum(m.neuron_steps for m in net.modules() if hasattr(m, "neuron_steps"))  # noqa: E731
    assert neurons(moved) < neurons(plain)
    b.sum().backward()
    assert moved.conv1.weight.grad is not None
