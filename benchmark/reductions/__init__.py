"""Every task's metrics as registered reductions of its per-sample records (torch-free):
importing this package registers the built-in ones. See `benchmark.reductions.core`."""

from benchmark.reductions import (
    attacks,
    autoattack,
    calibration,
    clean,
    corruptions,
    ood,
    perturbations,
    selective,
    shift,
)
from benchmark.reductions.core import (
    METRICS,
    MetricFn,
    NoMetrics,
    metric_functions,
    reduce_records,
    register_metric,
)

__all__ = ["METRICS", "MetricFn", "NoMetrics", "attacks", "autoattack", "calibration", "clean",
           "corruptions", "metric_functions", "ood", "perturbations", "reduce_records",
           "register_metric", "selective", "shift"]
