"""Names of the metrics a run produces: written here once, imported by the trainer, tracking and reports.

Rule of evidence: decisions (layer choice, BWO, best epoch, sweep objectives, pruning, a report's
Pareto front) read validation metrics; test metrics are logged every epoch and reported, never
selected on. ``docs/tracking.md`` lists every metric.
"""

__all__ = [
    "EPOCH",
    "TRAIN_LOSS",
    "TRAIN_ACCURACY",
    "VAL_ACCURACY",
    "VAL_LOSS",
    "BEST_VAL_ACCURACY",
    "TEST_ACCURACY",
    "TEST_LOSS",
    "TEST_PREFIX",
    "STORAGE_BYTES",
    "FP32_BYTES",
    "STORAGE_REDUCTION",
    "NUM_BINARIZED",
    "BINARIZED_LAYERS",
    "ESTIMATES",
    "FIRING_RATES",
    "EPOCH_SECONDS",
    "BWO_EPOCH",
    "BEST_EPOCH",
    "BEST_EPOCH_TEST_ACCURACY",
    "ESTIMATOR_CHECK",
    "FIRING_RATE_PREFIX",
    "ESTIMATE_PREFIX",
    "CHECK_MEASURED_PREFIX",
    "CHECK_ESTIMATE_PREFIX",
    "LEARNING_RATE",
    "SWEEP_BEST_VAL_ACCURACY",
    "SWEEP_VAL_HYPERVOLUME",
    "SWEEP_COUNT_PREFIX",
    "SWEEP_CONFIRM_COUNT_PREFIX",
    "SWEEP_CONFIRM_SURVIVORS",
]

# One record per epoch (the trainer's callbacks and metrics.jsonl), step = EPOCH:
EPOCH = "epoch"  # 1..epochs
TRAIN_LOSS = "train_loss"
TRAIN_ACCURACY = "train_accuracy"
VAL_ACCURACY = "val_accuracy"
VAL_LOSS = "val_loss"
BEST_VAL_ACCURACY = "best_val_accuracy"  # running max of val_accuracy: its last value is the run's best
TEST_ACCURACY = "test_accuracy"
TEST_LOSS = "test_loss"
TEST_PREFIX = "test_"  # every metric that starts so is reported, never an objective
STORAGE_BYTES = "storage_bytes"
FP32_BYTES = "fp32_bytes"  # the same network in full precision
STORAGE_REDUCTION = "storage_reduction"  # 1 - storage_bytes / fp32_bytes
NUM_BINARIZED = "num_binarized"
BINARIZED_LAYERS = "binarized_layers"  # the binary layers' names (a list: no tracker number)
ESTIMATES = "estimates"  # {layer: estimate} of a decision epoch; trackers get ESTIMATE_PREFIX + layer
FIRING_RATES = "firing_rates"  # {layer: rate}; trackers get FIRING_RATE_PREFIX + layer
EPOCH_SECONDS = "epoch_seconds"  # the epoch's training time, evaluation left out
BWO_EPOCH = "bwo_epoch"  # the epoch BWO started, None before (and without) it
# The run's result also names the epoch validation picks, and that epoch's test accuracy:
BEST_EPOCH = "best_epoch"
BEST_EPOCH_TEST_ACCURACY = "best_epoch_test_accuracy"
LEARNING_RATE = "learning_rate"  # the optimizer's rate at the epoch's end (not the `lr` config field)
ESTIMATOR_CHECK = "estimator_check"  # final epoch: {"measured": {layer: pp}, "estimates": {kind: {layer: v}}}
# Flat names (one number each) for trackers:
FIRING_RATE_PREFIX = "firing_rate."  # + layer
ESTIMATE_PREFIX = "estimate."  # + layer
CHECK_MEASURED_PREFIX = "check_measured."  # + layer: true validation accuracy drop (pp), final epoch
CHECK_ESTIMATE_PREFIX = "check_estimate."  # + estimator + "." + layer, final epoch
# A sweep's parent run (side-by-side comparison of sweeps): the best val_accuracy of its trials,
# the normalised hypervolume of (val_accuracy, storage_bytes) of its finished trials, and
# trials_<state> counts (trials_finished, trials_pruned, trials_failed).
SWEEP_BEST_VAL_ACCURACY = "sweep_best_val_accuracy"
SWEEP_VAL_HYPERVOLUME = "sweep_val_hypervolume"
SWEEP_COUNT_PREFIX = "trials_"  # the search's trials by state (confirmation runs not included)
SWEEP_CONFIRM_COUNT_PREFIX = "confirm_runs_"  # confirmation runs by state
SWEEP_CONFIRM_SURVIVORS = "confirm_survivors"  # candidates that survive confirmation
