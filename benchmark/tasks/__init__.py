"""Registered evaluation tasks (importing this package registers them all)."""

from benchmark.tasks import (
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
from benchmark.tasks.registry import (
    TaskContext,
    TaskDef,
    TaskPlaces,
    get_task,
    list_tasks,
    predict,
    register_task,
    resolve_params,
)

__all__ = ["TaskContext", "TaskDef", "TaskPlaces", "attacks", "autoattack", "calibration", "clean",
           "corruptions", "get_task", "list_tasks", "ood", "perturbations", "predict",
           "register_task", "resolve_params", "selective", "shift"]
