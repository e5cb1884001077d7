"""``make fuzz``: run N fuzz cases (default 10,000) and print a summary; with
``--compositions M``, then M generated compositions through the whole model API
(``tests/compositions.py``; every fifth one exported to ONNX as well).

Usage: python -m tests.fuzz_report [N] [--compositions M]; exits 1 if any exception other
than SpecError escapes, any fuzz case takes 2 s or more, or any composition that
validates fails an API call.
"""

from __future__ import annotations

import re
import sys
import time
import traceback

from tests.test_fuzz import run_case


def main() -> int:
    args = sys.argv[1:]
    compositions = 0
    if "--compositions" in args:
        at = args.index("--compositions")
        compositions = int(args[at + 1])
        del args[at : at + 2]
    total = int(args[0]) if args else 10_000
    failed = fuzz(total)
    if compositions:
        failed |= composition_report(compositions)
    return 1 if failed else 0


def fuzz(total: int) -> bool:
    # warm up as tests/conftest.py does: the first summary in a process pays one-time lazy
    # imports and kernel registrations (about 3 s here), which are no case's own cost
    import vitgraph
    from vitgraph.spec.catalog import registry

    registry()
    vitgraph.load("vit_ti_16").summary()
    kinds: dict[str, int] = {}
    escapes, slow, slowest = 0, 0, (0.0, -1)
    start = time.perf_counter()
    for seed in range(total):
        try:
            outcome, seconds = run_case(seed)
        except Exception:  # anything but SpecError is an escape
            escapes += 1
            print(f"ESCAPE seed {seed}:\n{traceback.format_exc(limit=-4)}", flush=True)
            continue
        kind = re.sub(r"'[^']*'|\d[\d,.e+-]*", "…", outcome)
        kinds[kind] = kinds.get(kind, 0) + 1
        if seconds >= 2.0:
            slow += 1
            print(f"SLOW seed {seed}: {seconds:.2f} s", flush=True)
        slowest = max(slowest, (seconds, seed))
    elapsed = time.perf_counter() - start
    print(
        f"fuzz: {total} cases in {elapsed:.0f} s; escapes {escapes}; cases over 2 s {slow}; "
        f"slowest {slowest[0]:.3f} s (seed {slowest[1]}); distinct error kinds "
        f"{len(kinds) - ('ok' in kinds)}; valid specs {kinds.get('ok', 0)}"
    )
    for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {count:6d}  {kind[:110]}")
    return bool(escapes or slow)


def composition_report(total: int) -> bool:
    """Run ``total`` generated compositions (Hypothesis, derandomized) through
    ``tests.compositions.exercise``; print the outcomes and every failure's spec."""
    from hypothesis import HealthCheck, given, settings

    from tests.compositions import as_yaml, compositions, exercise

    outcomes: dict[str, int] = {}
    failures: list[tuple[str, str]] = []
    count = [0]
    start = time.perf_counter()

    @settings(
        max_examples=total,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(compositions())
    def run(spec: dict) -> None:
        text = as_yaml(spec)
        count[0] += 1
        try:
            outcome = exercise(text, onnx=count[0] % 5 == 0)
        except Exception:  # an API call failed on a composition that validates
            failures.append((text, traceback.format_exc(limit=-4)))
            outcome = "FAILED"
        key = f"{spec['name']}: {re.sub(r'[0-9]+', '…', outcome)[:100]}"
        outcomes[key] = outcomes.get(key, 0) + 1

    run()
    elapsed = time.perf_counter() - start
    ok = sum(n for k, n in outcomes.items() if k.endswith(": ok"))
    print(
        f"compositions: {count[0]} in {elapsed:.0f} s; through the whole API {ok}; "
        f"located spec errors {count[0] - ok - len(failures)}; failures {len(failures)}"
    )
    for key, n in sorted(outcomes.items(), key=lambda kv: -kv[1]):
        print(f"  {n:6d}  {key}")
    for text, trace in failures[:10]:
        print(f"FAILED composition:\n{text}{trace}", flush=True)
    return bool(failures)


if __name__ == "__main__":
    sys.exit(main())
