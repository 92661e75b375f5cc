"""Which task an episode gets: by task id, by split + index (+ seed), by seed, or the next of a shuffled cycle.

Every generation of a GRPO group must answer the same question, so a client names the task; the reference
OpenEnv FinQA server cannot (it hands out the next question of its own shuffled list, which is what a
`reset()` without arguments does here too).

    reset(task_id="sec10k-...")              that task
    reset(split="train", index=17)           the 18th task of the split, ordered by task_id
    reset(split="train", index=17, seed=3)   the 18th task of the split in a permutation seeded by 3
    reset(split="train", seed=3)             one task of the split drawn with seed 3 (same seed, same task)
    reset(seed=3)                            as above, over every task the server serves
    reset()                                  the next task of the server's shuffled cycle

`episode_id` may accompany any of these (a client's own id for the episode; default a random UUID).
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from typing import Any

RESET_KEYS = ("task_id", "split", "index", "seed", "episode_id")


class TaskSelectionError(ValueError):
    """Reset arguments that name no task; the message says what is valid."""


class TaskCatalog:
    def __init__(self, tasks: list[dict[str, Any]], seed: int = 0):
        if not tasks:
            raise ValueError("no tasks to serve: the snapshot (with the chosen splits) has none")
        self.by_id = {t["task_id"]: t for t in tasks}
        ordered = sorted(self.by_id.values(), key=lambda t: t["task_id"])
        self.all = ordered
        self.by_split: dict[str, list[dict[str, Any]]] = {}
        for task in ordered:
            self.by_split.setdefault(task["split"], []).append(task)
        self._cycle = list(ordered)
        self._cycle_rng = random.Random(seed)
        self._cycle_rng.shuffle(self._cycle)
        self._cycle_position = 0
        self._lock = threading.Lock()
        self._permutations: OrderedDict[tuple[str | None, int], list[dict[str, Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.all)

    def counts(self) -> dict[str, int]:
        return {split: len(tasks) for split, tasks in sorted(self.by_split.items())}

    def select(self, request: dict[str, Any]) -> dict[str, Any]:
        """The task for a reset request (its keys: RESET_KEYS); TaskSelectionError if none."""
        unknown = [k for k in request if k not in RESET_KEYS]
        if unknown:
            raise TaskSelectionError(
                f"unknown reset argument(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(RESET_KEYS)}"
            )
        task_id, split, index, seed = (request.get(k) for k in ("task_id", "split", "index", "seed"))
        episode_id = request.get("episode_id")
        if episode_id is not None and not isinstance(episode_id, str):
            raise TaskSelectionError("episode_id must be a string")
        if task_id is not None:
            if split is not None or index is not None or seed is not None:
                raise TaskSelectionError("give either task_id or split/index/seed, not both")
            if not isinstance(task_id, str) or task_id not in self.by_id:
                example = self.all[0]["task_id"]
                raise TaskSelectionError(
                    f"unknown task_id {task_id!r}: this server serves {len(self.all):,} tasks "
                    f"({', '.join(f'{s}: {n:,}' for s, n in self.counts().items())}), e.g. {example!r}"
                )
            return self.by_id[task_id]
        for name, value in (("index", index), ("seed", seed)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise TaskSelectionError(f"{name} must be an integer, not {value!r}")
        if split is not None:
            if split not in self.by_split:
                raise TaskSelectionError(
                    f"unknown split {split!r}; this server serves: {', '.join(self.by_split) or 'none'}"
                )
            pool = self.by_split[split]
        else:
            pool = self.all
        if index is not None:
            if not 0 <= index < len(pool):
                raise TaskSelectionError(f"index {index} is out of range: {len(pool):,} tasks (0..{len(pool) - 1})")
            return pool[index] if seed is None else self._permutation(split, pool, seed)[index]
        if seed is not None:
            return random.Random(seed).choice(pool)
        if split is not None:
            raise TaskSelectionError("with split, give index and/or seed (or task_id instead)")
        with self._lock:
            if self._cycle_position >= len(self._cycle):
                self._cycle_rng.shuffle(self._cycle)
                self._cycle_position = 0
            task = self._cycle[self._cycle_position]
            self._cycle_position += 1
        return task

    def _permutation(self, split: str | None, pool: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
        """The pool shuffled with `seed` (the last few are kept: a trainer walks one index after another)."""
        key = (split, seed)
        with self._lock:
            order = self._permutations.get(key)
            if order is None:
                order = list(pool)
                random.Random(seed).shuffle(order)
                self._permutations[key] = order
                while len(self._permutations) > 16:
                    self._permutations.popitem(last=False)
            else:
                self._permutations.move_to_end(key)
        return order
