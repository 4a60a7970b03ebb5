"""Batched-inference throughput: episodes/hour and policy time share vs worker count.

Runs the same LIBERO episodes through `wambench.evaluate` with 1, 2 and 4
simulator workers for each policy (`noop`; `imagewam_tiny` when registered
and its dependencies import) and prints, per variant:
  eps/h         episodes per hour of runner wall time (worker start-up and env builds included)
  policy share  time inside Policy.act / wall time (a GPU-utilisation proxy)
  mean batch    observations per Policy.act call (lock-step batching across workers)

    python benchmarks/throughput.py --episodes 8 --max-steps 60 --rounds 3
    python benchmarks/throughput.py --executor ray --workers 1,2,4

On a shared machine absolute numbers drift with load; compare within one
invocation. With more workers than cores the simulators share CPUs with the
policy, so the scaling it shows is a lower bound for a machine with cores to spare.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Row:
    policy: str
    executor: str
    workers: int
    episodes: int
    wall_s: float
    eps_per_hour: float
    policy_share: float
    mean_batch: float
    errors: int


def available(policy: str) -> str | None:
    """None if `policy` can be built here, else why not."""
    from wambench.policies import POLICIES
    from wambench.registry import MissingDependencyError, UnknownNameError

    try:
        POLICIES.get(policy).load()
    except (UnknownNameError, MissingDependencyError, ImportError) as e:
        return str(e)
    return None


def measure(policy: str, workers: int, args: argparse.Namespace, root: Path) -> Row:
    from wambench.evaluate import EvalRequest, evaluate

    req = EvalRequest(
        suite=args.suite, policy=policy, tasks=[int(t) for t in args.tasks.split(",")], episodes=args.episodes,
        knobs={"max_steps": args.max_steps, "wait_steps": args.wait_steps}, workers=workers, video="none",
        out=root / f"{policy}_{args.executor}_{workers}", force=True, executor=args.executor,
    )
    result = evaluate(req)
    n = len(result.records)
    return Row(
        policy=policy, executor=args.executor, workers=workers, episodes=n, wall_s=round(result.wall_s, 2),
        eps_per_hour=round(3600 * n / result.wall_s, 1),
        policy_share=round(result.policy_s / result.wall_s, 3),
        mean_batch=round(result.batched_obs / max(result.batches, 1), 2),
        errors=sum(r.error is not None for r in result.records),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="libero-object")
    ap.add_argument("--tasks", default="0", help="comma-separated task indices")
    ap.add_argument("--episodes", type=int, default=8, help="episodes per task")
    ap.add_argument("--max-steps", type=int, default=60)
    ap.add_argument("--wait-steps", type=int, default=10)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--policies", default="noop,imagewam_tiny")
    ap.add_argument("--executor", default="local", choices=("local", "ray"))
    ap.add_argument("--rounds", type=int, default=3, help="every variant once per round, order alternating")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)

    variants = []
    for policy in args.policies.split(","):
        why = available(policy)
        if why:
            print(f"skipping {policy}: {why}", file=sys.stderr)
            continue
        variants += [(policy, int(w)) for w in args.workers.split(",")]
    runs: dict[tuple[str, int], list[Row]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="wambench-throughput-") as tmp:
        for r in range(args.rounds):
            # Alternate the order round by round, so a drifting machine load hits every variant alike.
            for policy, workers in (variants if r % 2 == 0 else list(reversed(variants))):
                row = measure(policy, workers, args, Path(tmp))
                print(json.dumps({"round": r, **asdict(row)}), file=sys.stderr, flush=True)
                runs[(policy, workers)].append(row)

    print(f"median (range) of {args.rounds} rounds")
    print("| policy | executor | workers | episodes | eps/h | x vs 1 worker | policy share | mean batch | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    base: dict[str, float] = {}
    rows: list[Row] = []
    for (policy, workers), done in runs.items():
        eph = [r.eps_per_hour for r in done]
        med = statistics.median(eph)
        base.setdefault(policy, med)
        rows += done
        print(f"| {policy} | {args.executor} | {workers} | {done[0].episodes} | {med:.0f} ({min(eph):.0f}–{max(eph):.0f}) | "
              f"{med / base[policy]:.2f} | {100 * statistics.median(r.policy_share for r in done):.1f}% | "
              f"{statistics.median(r.mean_batch for r in done)} | {sum(r.errors for r in done)} |")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
