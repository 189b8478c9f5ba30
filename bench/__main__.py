"""`python -m bench NAME [args]` runs one benchmark; without a name, lists them.

Each entry maps a name to a module exposing `main(argv: list[str]) -> int`, imported only
when chosen, so one benchmark's dependencies never slow down or break another.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS: dict[str, str] = {
    "accuracy": "bench.accuracy",
    "cache": "bench.cache",
    "callout": "bench.callout",
    "compare": "bench.compare_verifiers",
    "egress": "bench.egress",
    "fair": "bench.fair",
    "flood": "bench.flood",
    "frontends": "bench.frontends",
    "instructions": "bench.instructions",
    "jobs": "bench.jobs",
    "policy": "bench.policy",
    "policy-instructions": "bench.policy_instructions",
    "soak": "bench.soak",
    "startup": "bench.startup",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in BENCHMARKS:
        if args:
            print(f"unknown benchmark {args[0]!r}", file=sys.stderr)
        print("usage: python -m bench NAME [args]\n\nbenchmarks:")
        for name, path in sorted(BENCHMARKS.items()):
            print(f"  {name:<12} {path}")
        return 2 if args else 0
    benchmark = importlib.import_module(BENCHMARKS[args[0]])
    result: int = benchmark.main(args[1:])
    return result


if __name__ == "__main__":
    sys.exit(main())
