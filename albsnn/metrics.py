"""Names of the metrics a run produces: written here once, imported by the trainer, tracking and reports.

Rule of evidence: decisions (layer choice, BWO, best epoch, sweep objectives, pruning, a report's
Pareto front) read validation metrics; test metrics are logged every epoch and reported, never
selected on. ``docs/tracking.md`` lists every metric.
"""

__all__ = [
    "VAL_ACCURACY",
    "VAL_LOSS",
    "BEST_VAL_ACCURACY",
    "TEST_ACCURACY",
    "TEST_LOSS",
    "TEST_PREFIX",
    "STORAGE_BYTES",
    "ESTIMATOR_CHECK",
    "FIRING_RATE_PREFIX",
    "ESTIMATE_PREFIX",
    "CHECK_MEASURED_PREFIX",
    "CHECK_ESTIMATE_PREFIX",
]

VAL_ACCURACY = "val_accuracy"
VAL_LOSS = "val_loss"
BEST_VAL_ACCURACY = "best_val_accuracy"  # running max of val_accuracy: its last value is the run's best
TEST_ACCURACY = "test_accuracy"
TEST_LOSS = "test_loss"
TEST_PREFIX = "test_"  # every metric that starts so is reported, never an objective
STORAGE_BYTES = "storage_bytes"
ESTIMATOR_CHECK = "estimator_check"  # final epoch: {"measured": {layer: pp}, "estimates": {kind: {layer: v}}}
# Flat names (one number each) for trackers:
FIRING_RATE_PREFIX = "firing_rate."  # + layer
ESTIMATE_PREFIX = "estimate."  # + layer
CHECK_MEASURED_PREFIX = "check_measured."  # + layer: true validation accuracy drop (pp), final epoch
CHECK_ESTIMATE_PREFIX = "check_estimate."  # + estimator + "." + layer, final epoch
