"""The registry of tasks by name; each task module registers its class with `register_task`."""

from __future__ import annotations

from collections.abc import Callable

TASKS: dict[str, Callable] = {}


def register_task(name: str):
    def deco(cls):
        TASKS[name] = cls
        return cls
    return deco
