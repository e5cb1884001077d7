"""``make fuzz``: run N fuzz cases (default 10,000) and print a summary.

Usage: python -m tests.fuzz_report [N]; exits 1 if any exception other than SpecError
escapes or any case takes 2 s or more.
"""

from __future__ import annotations

import re
import sys
import time
import traceback

from tests.test_fuzz import run_case


def main() -> int:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
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
    return 1 if escapes or slow else 0


if __name__ == "__main__":
    sys.exit(main())
