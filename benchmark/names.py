"""Condition values that tasks, reductions and reports name alike (torch-free, import-free), so
a report never keeps its own copy of a value a task writes."""

ID_SET = "in_distribution"  # `ood_set` of the ID scores' table and histogram rows
MEAN_SET = "mean"  # `ood_set` of the mean over the OOD sets
BENCHMARK_GROUP = "benchmark"  # corruptions' `category` of the mean over the 15 benchmark ones
