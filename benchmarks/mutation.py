"""`make mutate`: mutation testing of the xDS core and the pure Consul-to-resources modules.

mutmut (the ``mutate`` extra; its settings are ``[tool.mutmut]`` in pyproject.toml) changes one
thing at a time in the code (an operator, a constant, a condition, an argument) and runs the fast
unit and protocol tests that execute the changed function. A mutant that no test notices
("survived") is a behaviour nothing guards. Runs one module at a time and writes
``benchmarks/results/mutation/SUMMARY.md`` (the kill rate per module) and ``survivors.md`` (every
mutant that survived, with its diff, and the reason it was accepted, from
``benchmarks/mutation_equivalent.toml``). ``mutants/`` is mutmut's work directory; after adding
tests, ``--survivors`` runs again only what survived there.

Exits non-zero when a survivor is neither killed nor explained, or when the kill rate of all
modules together is below 90 %: the report is written either way.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"  # mutmut's work directory (git-ignored)
OUT = ROOT / "benchmarks" / "results" / "mutation"
EQUIVALENTS = ROOT / "benchmarks" / "mutation_equivalent.toml"
TIMES = MUTANTS / "times.json"  # wall time of each module's last mutmut run
TARGET_RATE = 0.90


@dataclass(frozen=True)
class Target:
    """One module under test; ``pattern`` selects its mutants (some modules: one function)."""

    path: str
    pattern: str
    scope: str = "the whole module"


TARGETS: tuple[Target, ...] = (
    Target("xds_server/resource.py", "xds_server.resource.*"),
    Target("xds_server/cache.py", "xds_server.cache.*"),
    Target("xds_server/stream.py", "xds_server.stream.*"),
    Target("xds_server/sotw.py", "xds_server.sotw.*"),
    Target("xds_server/delta.py", "xds_server.delta.*"),
    Target("xds_server/tracking.py", "xds_server.tracking.*"),
    Target("xds_server/validation/__init__.py", "xds_server.validation.x*"),
    Target("xds_server/validation/walk.py", "xds_server.validation.walk.*"),
    Target("xds_server/validation/scalars.py", "xds_server.validation.scalars.*"),
    Target("xds_server/validation/domains.py", "xds_server.validation.domains.*"),
    Target("bridge/model.py", "bridge.model.*"),
    Target("bridge/catalog.py", "bridge.catalog.*"),
    Target("bridge/resources.py", "bridge.resources.*"),
    Target("bridge/consul/blocking.py", "bridge.consul.blocking.x_next_index*", "next_index"),
    Target(
        "bridge/consul/services.py",
        "bridge.consul.services.x_catalog_selection*",
        "catalog_selection",
    ),
)

# mutmut's exit codes per mutant (mutmut/stats.py); anything else is "suspicious".
KILLED = {1: "killed", 3: "killed", 37: "killed"}  # 37: caught by the type checker
TIMEOUT = {-24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", 36: "timeout"}
OTHER = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", -11: "segfault"}


def status_of(code: int | None) -> str:
    if code is None:
        return "not checked"
    return KILLED.get(code) or TIMEOUT.get(code) or OTHER.get(code) or "suspicious"


@dataclass(frozen=True)
class Equivalent:
    """Surviving mutants accepted as equivalent: ``function`` is a glob on mutmut's name of the
    mutated function (``module.x_function`` or ``module.xǁClassǁmethod``); ``line`` is the
    mutated line(s) exactly as they read in the mutant, or ``line_re`` a regular expression they
    match entirely."""

    function: str
    reason: str
    line: str | None = None
    line_re: str | None = None
    text_only: bool = False  # the mutant only changes the case of a string or wraps it in XX

    def matches(self, mutant: str, diff: str) -> bool:
        if not fnmatch.fnmatchcase(function_of(mutant), self.function):
            return False
        lines = changed_lines(diff)
        if self.line is not None:
            return lines == self.line
        if self.line_re is not None:
            return re.fullmatch(self.line_re, lines) is not None
        return self.text_only and only_text_changed(diff)

    @property
    def shown(self) -> str:
        if self.line is not None:
            return f"`{self.function}`: `{self.line}`"
        if self.line_re is not None:
            return f"`{self.function}`: /{self.line_re}/"
        return f"`{self.function}`: message text only"


@dataclass
class Survivor:
    name: str
    status: str
    diff: str
    equivalent: Equivalent | None = None


@dataclass
class ModuleResult:
    target: Target
    counts: Counter[str] = field(default_factory=Counter)
    survivors: list[Survivor] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def detected(self) -> int:
        return self.counts["killed"] + self.counts["timeout"]

    @property
    def equivalent(self) -> int:
        return sum(1 for s in self.survivors if s.equivalent is not None)

    @property
    def unexplained(self) -> list[Survivor]:
        return [s for s in self.survivors if s.equivalent is None]


def mutmut() -> str:
    return str(Path(sys.executable).parent / "mutmut")


def load_equivalents() -> list[Equivalent]:
    data = tomllib.loads(EQUIVALENTS.read_text("utf-8")) if EQUIVALENTS.exists() else {}
    return [
        Equivalent(
            function=e["function"],
            reason=" ".join(e["reason"].split()),
            line=e["line"].strip() if "line" in e else None,
            line_re=e.get("line_re"),
            text_only=bool(e.get("text_only", False)),
        )
        for e in data.get("equivalent", [])
    ]


def changed_lines(diff: str) -> str:
    """The mutated line(s) of a ``mutmut show`` diff, stripped."""
    return "\n".join(
        line[1:].strip()
        for line in diff.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    )


def only_text_changed(diff: str) -> bool:
    """The mutant changes one string literal's case, or wraps it in ``XX``, and nothing else."""
    removed = [line[1:] for line in diff.splitlines() if line[:1] == "-" and line[:3] != "---"]
    added = [line[1:] for line in diff.splitlines() if line[:1] == "+" and line[:3] != "+++"]
    if len(removed) != 1 or len(added) != 1 or removed == added:
        return False
    before, after = removed[0], added[0]
    unwrapped = re.sub(r'(["\'])XX(.*?)XX\1', r"\1\2\1", after)
    return unwrapped == before or (
        after.lower() == before.lower()
        and re.sub(r'"[^"]*"', "", after) == re.sub(r'"[^"]*"', "", before)
    )


def function_of(mutant: str) -> str:
    return mutant.rsplit("__mutmut_", 1)[0]


def run_module(target: Target, names: list[str], max_children: int, log_dir: Path) -> float:
    """``mutmut run`` on one module's mutants (``names``, or all of them when empty); returns
    the wall time in seconds."""
    log_path = log_dir / (target.path.replace("/", ".") + ".log")
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        done = subprocess.run(
            [mutmut(), "run", "--max-children", str(max_children), *(names or [target.pattern])],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"mutmut failed on {target.path} (exit {done.returncode}); see {log_path}")
    return seconds


def exit_codes(target: Target) -> dict[str, int | None]:
    """mutmut's result per mutant of ``target`` (from its last run)."""
    meta = MUTANTS / (target.path + ".meta")
    codes: dict[str, int | None] = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
    return {n: c for n, c in codes.items() if fnmatch.fnmatchcase(n, target.pattern)}


def not_killed(target: Target) -> list[str]:
    meta = MUTANTS / (target.path + ".meta")
    if not meta.exists():
        return [target.pattern]
    return sorted(
        n for n, c in exit_codes(target).items() if status_of(c) not in ("killed", "timeout")
    )


def load_times() -> dict[str, float]:
    data = json.loads(TIMES.read_text("utf-8")) if TIMES.exists() else {}
    return {k: float(v) for k, v in data.items()}


def collect(target: Target, equivalents: list[Equivalent], times: dict[str, float]) -> ModuleResult:
    codes = exit_codes(target)
    result = ModuleResult(target, seconds=times.get(target.path, 0.0))
    for name in sorted(codes):
        status = status_of(codes[name])
        result.counts[status] += 1
        if status in ("killed", "timeout"):
            continue
        diff = subprocess.run(
            [mutmut(), "show", name], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        diff = diff.split("\n", 1)[1].strip() if diff.startswith("#") else diff.strip()
        match = next((e for e in equivalents if e.matches(name, diff)), None)
        result.survivors.append(Survivor(name, status, diff, match))
    return result


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def write_report(results: list[ModuleResult], equivalents: list[Equivalent]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    total = sum(r.total for r in results)
    detected = sum(r.detected for r in results)
    equivalent = sum(r.equivalent for r in results)
    unexplained = sum(len(r.unexplained) for r in results)
    used = {id(s.equivalent) for r in results for s in r.survivors if s.equivalent}
    modules = tuple(r.target.path.removesuffix(".py").replace("/", ".") + "." for r in results)
    unused = [e for e in equivalents if id(e) not in used and e.function.startswith(modules)]
    lines = [
        "# Mutation testing",
        "",
        f"Written by `make mutate` (mutmut {mutmut_version()}); "
        f"{round(sum(r.seconds for r in results))} s of mutmut runs in all (wall time, on a "
        "2-core machine shared with other work; `--survivors` runs add to a module's time).",
        "",
        "A mutant is killed when a test fails (or hangs: timeout) with it. *Accepted*: "
        "survivors listed with a reason in `benchmarks/mutation_equivalent.toml` (equivalent "
        "code, or only the wording of a message changes). *Kill rate*: killed / all mutants. "
        "*Score*: killed / (all mutants - accepted). Every survivor, with its diff and the "
        "reason it was accepted: [survivors.md](survivors.md).",
        "",
        "| module | mutated | mutants | killed | timeout | survived | no tests | accepted "
        "| kill rate | score | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| `{r.target.path}` | {r.target.scope} | {r.total} | {r.counts['killed']} "
            f"| {r.counts['timeout']} | {r.counts['survived']} | {r.counts['no tests']} "
            f"| {r.equivalent} | {percent(r.detected, r.total)} "
            f"| {percent(r.detected, r.total - r.equivalent)} | {round(r.seconds)} |"
        )
    lines.append(
        f"| **all** | | **{total}** | {sum(r.counts['killed'] for r in results)} "
        f"| {sum(r.counts['timeout'] for r in results)} "
        f"| {sum(r.counts['survived'] for r in results)} "
        f"| {sum(r.counts['no tests'] for r in results)} | {equivalent} "
        f"| **{percent(detected, total)}** | **{percent(detected, total - equivalent)}** "
        f"| {round(sum(r.seconds for r in results))} |"
    )
    lines += ["", f"Survivors neither killed nor accepted: **{unexplained}**."]
    if unused:
        lines += [
            "",
            "Entries of `benchmarks/mutation_equivalent.toml` that matched no survivor "
            "(the code changed; remove or update them):",
            "",
        ]
        lines += [f"- {e.shown}" for e in unused]
    (OUT / "SUMMARY.md").write_text("\n".join(lines) + "\n", "utf-8")

    out = ["# Surviving mutants", "", "Written by `make mutate`; see [SUMMARY.md](SUMMARY.md).", ""]
    for r in results:
        out += [f"## `{r.target.path}` ({r.target.scope})", ""]
        if not r.survivors:
            out += ["None.", ""]
        for s in r.survivors:
            verdict = f"Accepted: {s.equivalent.reason}" if s.equivalent else "**Not explained.**"
            out += [f"### `{s.name}` ({s.status})", "", verdict, "", "```diff", s.diff, "```", ""]
    (OUT / "survivors.md").write_text("\n".join(out), "utf-8")


def mutmut_version() -> str:
    done = subprocess.run([mutmut(), "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip().rsplit(" ", 1)[-1] or "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mutation", description=__doc__)
    parser.add_argument(
        "--module",
        action="append",
        default=[],
        help="run only this module (a path such as xds_server/cache.py; the others keep their "
        "last results in the report); repeatable",
    )
    parser.add_argument("--max-children", type=int, default=1, help="mutants run in parallel")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="do not run mutmut: write the report from the results in mutants/",
    )
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="keep mutants/ and run again only the mutants that survived there (after adding "
        "tests); the default is a fresh run of every mutant",
    )
    args = parser.parse_args(argv)
    unknown = set(args.module) - {t.path for t in TARGETS}
    if unknown:
        parser.error(f"unknown module(s): {', '.join(sorted(unknown))}")
    targets = [t for t in TARGETS if not args.module or t.path in args.module]

    if not args.report_only:
        if not args.survivors and not args.module and MUTANTS.exists():
            shutil.rmtree(MUTANTS)  # a fresh run of everything
        log_dir = MUTANTS / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        times = load_times()
        for target in targets:
            names = not_killed(target) if args.survivors else []
            if args.survivors and not names:
                continue
            seconds = run_module(target, names, args.max_children, log_dir)
            times[target.path] = seconds + (times.get(target.path, 0.0) if args.survivors else 0)
            TIMES.write_text(json.dumps(times, indent=1), "utf-8")
            print(f"{target.path}: {round(seconds)} s", flush=True)

    # The report covers every module with results, whichever ones this run ran.
    equivalents = load_equivalents()
    times = load_times()
    reported = [
        t
        for t in TARGETS
        if (MUTANTS / (t.path + ".meta")).exists()
        and any(code is not None for code in exit_codes(t).values())
    ]
    results = [collect(t, equivalents, times) for t in reported]
    write_report(results, equivalents)
    for r in results:
        print(
            f"{r.target.path}: {r.detected}/{r.total} killed ({percent(r.detected, r.total)}), "
            f"{r.equivalent} accepted, {len(r.unexplained)} unexplained"
        )
    total = sum(r.total for r in results)
    detected = sum(r.detected for r in results)
    unexplained = sum(len(r.unexplained) for r in results)
    print(f"all: {percent(detected, total)} killed; report in {OUT.relative_to(ROOT)}/")
    if unexplained or (total and detected / total < TARGET_RATE):
        print(f"{unexplained} survivor(s) not explained; see survivors.md", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
