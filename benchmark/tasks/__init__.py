"""Registered evaluation tasks (importing this package registers them all)."""

from benchmark.tasks import clean
from benchmark.tasks.registry import (
    Metric,
    TaskContext,
    TaskDef,
    get_task,
    list_tasks,
    predict,
    register_task,
    resolve_params,
)

__all__ = ["Metric", "TaskContext", "TaskDef", "clean", "get_task", "list_tasks", "predict",
           "register_task", "resolve_params"]
