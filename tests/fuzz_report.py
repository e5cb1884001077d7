"""``make fuzz``: N structured cases (default 10,000; tests/fuzz_specs.py) and a report:
per-kind coverage (valid cases that validated and built, invalid cases refused), the
error kinds reached, escapes; with ``--compositions M``, then M generated compositions
through the whole model API (``tests/compositions.py``; every fifth one exported to ONNX
as well).

Usage: python -m tests.fuzz_report [N] [--compositions M]; exits 1 if any exception other
than a located SpecError escapes, a kind is not reached both ways (a valid spec that
builds, an invalid one refused), an invalid case is accepted, or any composition that
validates fails an API call.
"""

from __future__ import annotations

import re
import sys
import time
import traceback
from typing import Any

from tests.fuzz_specs import Case


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


def _settings(total: int) -> Any:
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=total,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )


def fuzz(total: int) -> bool:
    from hypothesis import given

    import vitgraph
    from tests.fuzz_specs import EMPTY_LAYER, anchors, cases, run
    from vitgraph.spec.catalog import registry

    start = time.perf_counter()
    found = anchors()
    vitgraph.load("vit_ti_16").summary()  # one-time lazy imports: no case's own cost
    print(
        f"anchors: {sum(map(len, found.values()))} for {len(found)} kinds in "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )
    # kind -> [valid ok, valid refused, invalid refused, invalid accepted]
    table: dict[str, list[int]] = {kind: [0, 0, 0, 0] for kind in registry().kinds()}
    errors: dict[str, int] = {}
    escapes: list[tuple[Case, str]] = []
    accepted: list[Case] = []
    slow: list[tuple[float, Case]] = []
    empty: dict[str, int] = {}  # kind -> valid specs that built a zero-size tensor
    empty_example: dict[str, str] = {}
    count = [0]
    start = time.perf_counter()

    @_settings(total)
    @given(cases())
    def one(case: Case) -> None:
        count[0] += 1
        began = time.perf_counter()
        try:
            outcome = run(case)
        except Exception:  # anything but a located SpecError is an escape
            escapes.append((case, traceback.format_exc(limit=-4)))
            return
        seconds = time.perf_counter() - began
        if seconds >= 2.0:
            slow.append((seconds, case))
        row = table.setdefault(case.kind, [0, 0, 0, 0])
        ok = outcome in ("ok", EMPTY_LAYER)
        if outcome == EMPTY_LAYER:
            empty[case.kind] = empty.get(case.kind, 0) + 1
            empty_example.setdefault(case.kind, case.change)
        row[(0 if ok else 1) if case.mode == "valid" else (3 if ok else 2)] += 1
        if case.mode == "invalid" and ok:
            accepted.append(case)
        if not ok:
            kind = re.sub(r"'[^']*'|\d[\d,.e+-]*", "…", outcome)
            errors[kind] = errors.get(kind, 0) + 1

    one()
    elapsed = time.perf_counter() - start
    print(
        f"{'kind':28s} {'valid: built':>12s} {'refused':>8s} {'invalid: refused':>17s}"
        f" {'accepted':>9s}"
    )
    for kind, (v_ok, v_no, i_no, i_ok) in sorted(table.items()):
        mark = "" if v_ok and i_no else "   <- not reached both ways"
        print(f"{kind:28s} {v_ok:12d} {v_no:8d} {i_no:17d} {i_ok:9d}{mark}")
    unreached = [k for k, row in table.items() if not (row[0] and row[2])]
    print(
        f"fuzz: {count[0]} cases in {elapsed:.0f} s; kinds {len(table)}, reached both ways "
        f"{len(table) - len(unreached)}; valid specs built "
        f"{sum(r[0] for r in table.values())}; distinct error kinds {len(errors)}; invalid "
        f"accepted {len(accepted)}; escapes {len(escapes)}; cases over 2 s {len(slow)}"
    )
    for kind, n in sorted(errors.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {n:6d}  {kind[:110]}")
    if empty:
        print(
            f"valid specs that built a zero-size tensor (listed, not failed): {sum(empty.values())}"
        )
        for kind, n in sorted(empty.items(), key=lambda kv: -kv[1]):
            print(f"  {n:6d}  {kind}: e.g. {empty_example[kind][:90]}")
    for seconds, case in sorted(slow, key=lambda sc: -sc[0])[:5]:
        print(f"SLOW {seconds:.2f} s: {case.kind} ({case.anchor}) {case.change}")
    for case in accepted[:10]:
        print(f"ACCEPTED {case.kind} ({case.anchor}): {case.change}")
    for case, trace in escapes[:10]:
        print(f"ESCAPE {case.kind} ({case.anchor}): {case.change}\n{trace}", flush=True)
    return bool(escapes or unreached or accepted)


def composition_report(total: int) -> bool:
    """Run ``total`` generated compositions (Hypothesis, derandomized) through
    ``tests.compositions.exercise``; print the outcomes and every failure's spec."""
    from hypothesis import given

    from tests.compositions import as_yaml, compositions, exercise

    outcomes: dict[str, int] = {}
    failures: list[tuple[str, str]] = []
    count = [0]
    start = time.perf_counter()

    @_settings(total)
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
