"""Evaluation profiles: every knob that silently changes a success rate, named.

Published numbers disagree because harnesses differ in max steps, wait steps,
actions executed per chunk, seeds, image preprocessing and instruction type.
A profile is named after the official evaluator it reproduces and fixes all of
them, each with its provenance (`sources`); each knob can be overridden and
the resolved values and their sources are written to the run manifest.

Who decides what:
- the profile decides the episode protocol (max/wait steps, seeds, episodes,
  replan, the simulator's render size);
- the policy decides its own input size: a policy whose `ObsRequest.image_size`
  is set gets that size, the profile's `image_size` applies only when it is
  None (the manifest records which one applied);
- `replan` resolves as user knob > `policy.default_replan` > profile.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

# How episodes are seeded (`seed_mode`):
#   per_episode: the env is seeded with seed + k before episode k (lerobot);
#   per_task:    seeded with `seed` before every episode (an approximation of a
#                sequential evaluator: episode 0 only matches);
#   sequential:  episode k starts from the random state an official evaluator that
#                seeds once per task and runs episodes 0..k-1 first would reach
#                (openpi, ImageWAM, Fast-WAM); benchmarks compute it once per task.
SEED_MODES = ("per_episode", "per_task", "sequential")

# Knobs the harness itself reads, valid for every suite.
HARNESS_KNOBS = ("video_every",)


@dataclass(frozen=True)
class EvalProfile:
    name: str
    # Policy-action budget per episode, per suite (wait steps not counted).
    max_steps: Mapping[str, int] = field(default_factory=dict)
    # No-op actions executed after reset so objects settle; not counted.
    wait_steps: int = 0
    # Actions executed open-loop from each predicted chunk before re-planning;
    # 0 means "the whole chunk".
    replan: int = 0
    # Episodes per task; None: the benchmark's own count (LIBERO: every init state).
    episodes: int | None = None
    render_size: int = 256  # simulator camera resolution
    image_size: int = 224  # what the policy receives (resize-with-pad) unless it asks for a size
    rotate_180: bool = False  # LIBERO cameras are upside down in the raw render
    seed_mode: str = "per_episode"  # one of SEED_MODES
    seed: int = 0
    # The official evaluator this profile reproduces (owner/repo@commit:path), and how exactly.
    evaluator: str = ""
    # Benchmark-specific knobs (RoboTwin: instruction_type, expert_check, ...).
    extra: Mapping[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)  # knob -> provenance (paper Sec. / owner/repo@commit:path)
    video_every: int = 2  # harness-owned: one video frame every N control steps, every suite

    def __post_init__(self) -> None:
        if self.seed_mode not in SEED_MODES:
            raise ValueError(f"unknown seed_mode {self.seed_mode!r}; choose one of {', '.join(SEED_MODES)}")
        if self.video_every < 1:
            raise ValueError(f"video_every must be >= 1, got {self.video_every}")

    def max_steps_for(self, suite: str) -> int:
        try:
            return self.max_steps[suite]
        except KeyError:
            if "*" in self.max_steps:
                return self.max_steps["*"]
            raise KeyError(f"profile {self.name!r} has no max_steps for suite {suite!r}") from None

    def seed_for(self, episode: int) -> int:
        """The seed an episode's env is seeded with (`sequential`: the per-task seed the state derives from)."""
        if self.seed_mode == "per_episode":
            return self.seed + episode
        return self.seed

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EvalProfile":
        """Inverse of `to_dict`; an unknown field raises TypeError (a run from another protocol schema)."""
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["max_steps"] = dict(self.max_steps)
        d["extra"] = dict(self.extra)
        d["sources"] = dict(self.sources)
        return d

    def knobs(self) -> list[tuple[str, Any, str, str]]:
        """(knob, value, type, source) for every overridable knob, `extra` included."""
        hints = typing.get_type_hints(EvalProfile)
        rows = []
        for f in dataclasses.fields(self):
            if f.name in ("name", "extra", "sources", "evaluator"):
                continue
            default = "wambench (harness-owned, every suite)" if f.name in HARNESS_KNOBS else ""
            rows.append((f.name, getattr(self, f.name), _type_name(hints[f.name]), self.sources.get(f.name, default)))
        for key, value in self.extra.items():
            rows.append((key, value, type(value).__name__, self.sources.get(key, "")))
        return rows

    def with_overrides(self, overrides: Mapping[str, Any], source: str = "user override") -> "EvalProfile":
        """Apply `knob=value` overrides (their source becomes `source`); unknown knobs are refused."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        hints = typing.get_type_hints(EvalProfile)
        changes: dict[str, Any] = {}
        extra = dict(self.extra)
        sources = dict(self.sources)
        for key, value in overrides.items():
            if key == "max_steps" and not isinstance(value, Mapping):
                changes["max_steps"] = {s: int(value) for s in (self.max_steps or {"*": 0})}
            elif key in fields and key not in ("name", "extra", "sources"):
                changes[key] = _coerce(value, hints[key], key)
            elif key in extra:
                extra[key] = _coerce(value, type(extra[key]), key)
            else:
                known = sorted([k for k in fields if k not in ("name", "extra", "sources")] + list(extra))
                raise ValueError(f"unknown protocol knob {key!r} for profile {self.name!r}; known: {', '.join(known)}")
            sources[key] = source
        return dataclasses.replace(self, extra=extra, sources=sources, **changes)


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _coerce(value: Any, kind: Any, key: str = "") -> Any:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        # `int | None`: "none"/"null" clears it, anything else is the non-None type.
        if isinstance(value, str) and value.lower() in ("none", "null", ""):
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if not isinstance(value, str) or kind is str:
        return value
    try:
        if kind is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind in (int, float):
            return kind(value)
        return json.loads(value)
    except ValueError:
        name = getattr(kind, "__name__", str(kind))
        raise ValueError(f"knob {key or '?'}: expected {name}, got {value!r}") from None


def parse_knobs(items: list[str]) -> dict[str, str]:
    knobs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KNOB=VALUE, got {item!r}")
        knobs[key.strip().replace("-", "_")] = value.strip()
    return knobs
