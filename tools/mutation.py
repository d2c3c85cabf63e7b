"""Mutation score of the contract modules: mutmut changes one operator, constant or call at a
time in the data order, the metrics, the checkpointer, the lr schedule and the evaluation, and
runs the tests that cover that module; a mutant that no test fails on "survives".

    pip install mutmut
    python tools/mutation.py [--only loader metrics] [--max-children 2] [--out FILE]
                             [--diffs FOLDER]

Not part of CI: minutes per module on two CPU cores. mutmut reads its settings from the
folder it runs in and writes `mutants/` there, so this runs it in a temporary copy of src/,
tests/ and pyproject.toml (without the `[tool.mutmut]` table, so that its setup.cfg is read)
and leaves the checkout alone. Writes one JSON line per module (killed, survived, timeouts,
score = killed / (killed + survived), the surviving mutants' names) to --out (default
results/mutation.jsonl); with --diffs, each survivor's diff into that folder, to read which
change no test notices (many are equivalent: another large prime in a seed formula).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (module, the test files that cover it)
CONTRACTS = {
    "loader": ("src/vitmae/data/loader.py", ["tests/data/test_loader.py"]),
    "metrics": ("src/vitmae/tasks/metrics.py",
                ["tests/tasks/test_metrics.py", "tests/tasks/test_classify.py"]),
    "checkpointer": ("src/vitmae/train/checkpointer.py",
                     ["tests/reliability/test_finetune_resume.py",
                      "tests/runs/test_checkpoint.py"]),
    "optim": ("src/vitmae/train/optim.py",
              ["tests/train/test_optim.py", "tests/train/test_runner.py"]),
    "engine": ("src/vitmae/train/engine.py",
               ["tests/train/test_engine.py", "tests/data/test_loader.py"]),  # ranks' sums
}


def copy_project(dest: Path) -> None:
    for name in ("src", "tests"):
        shutil.copytree(ROOT / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def write_setup_cfg(dest: Path, module: str, tests: list[str]) -> None:
    """mutmut's settings: mutate `module` only, select `tests`, fork from a server process
    (torch is not fork-safe once threads have started)."""
    lines = ["[mutmut]", "source_paths=src", f"only_mutate={module}",
             "pytest_add_cli_args_test_selection=" + "\n    ".join(tests),
             "pytest_add_cli_args=-p no:cacheprovider", "process_isolation=forkserver"]
    (dest / "setup.cfg").write_text("\n".join(lines) + "\n")


def score(work: Path) -> dict:
    """Counts from mutmut's CI/CD statistics file."""
    subprocess.run(["mutmut", "export-cicd-stats"], cwd=work, check=True, capture_output=True)
    stats = json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text())
    killed, survived = stats.get("killed", 0), stats.get("survived", 0)
    return {**stats, "score": killed / max(killed + survived, 1)}


def survivors(work: Path, diffs: Path | None) -> list[str]:
    """The names of the surviving mutants; with `diffs`, each one's diff written there."""
    out = subprocess.run(["mutmut", "results"], cwd=work, check=True, capture_output=True,
                         text=True).stdout
    names = [line.split(":")[0].strip() for line in out.splitlines()
             if line.strip().endswith(": survived")]
    if diffs is not None:
        diffs.mkdir(parents=True, exist_ok=True)
        for name in names:
            shown = subprocess.run(["mutmut", "show", name], cwd=work, check=True,
                                   capture_output=True, text=True).stdout
            (diffs / f"{name}.diff").write_text(shown)
    return names


def run_module(name: str, max_children: int, diffs: Path | None = None) -> dict:
    module, tests = CONTRACTS[name]
    with tempfile.TemporaryDirectory(prefix="vitmae-mutation-") as tmp:
        work = Path(tmp)
        copy_project(work)
        write_setup_cfg(work, module, tests)
        env = {**os.environ, "PYTHONPATH": "src", "OMP_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        proc = subprocess.run(["mutmut", "run", "--max-children", str(max_children)], cwd=work,
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"mutmut run failed for {module}:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
        minutes = round((time.perf_counter() - t0) / 60, 1)
        return {"module": module, "tests": tests, **score(work), "minutes": minutes,
                "date": time.strftime("%Y-%m-%d"), "survived_mutants": survivors(work, diffs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", choices=sorted(CONTRACTS), default=sorted(CONTRACTS))
    ap.add_argument("--max-children", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "mutation.jsonl")
    ap.add_argument("--diffs", type=Path, help="write each surviving mutant's diff here")
    args = ap.parse_args()
    if shutil.which("mutmut") is None:
        raise SystemExit("mutmut is not installed: pip install mutmut")
    for name in args.only:
        result = run_module(name, args.max_children, args.diffs)
        print(json.dumps(result), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    sys.exit(main())
