"""Step 1 of the main job (`examples/run_eco_m2f.py --steps step1`: 100 fine-tuning steps of the shipped parent, one
thread) timed with two source trees, e.g. main before a change and this checkout after it.

Each tree renders the main job's data once (`--steps data`, not timed), then the runs alternate between the trees
(`--repeats` each, the first tree first on odd rounds); a run's time is step 1's own training time
(`train_seconds_this_run` of its summary, validation excluded) and the main job's wall time for the step. The last
logged training loss of each run is recorded too (the trees should train the same model). Python writes no bytecode into
the trees. Writes `step1.json` and `step1.md` under `--out`.

    python benchmarks/benchmark_step1.py --trees before=/path/to/main after=. --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_common as common  # noqa: E402


def run_job(tree: Path, output_dir: Path, steps: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(tree / "examples" / "run_eco_m2f.py"), "--steps", steps, "--output_dir",
               str(output_dir), "--docs_dir", "", "--deadline_minutes", "0"]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, cwd=output_dir, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs=2, required=True, metavar="NAME=PATH", help="two source trees to compare")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--note", default="", help="recorded with the results (e.g. what else ran on the machine)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    trees = {name: Path(path).resolve() for name, path in (t.split("=", 1) for t in args.trees)}
    work = Path(tempfile.mkdtemp(prefix="ecom2f_step1_"))
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    try:
        for name, tree in trees.items():
            (work / name).mkdir()
            run_job(tree, work / name, "data")
        for rep in range(args.repeats):
            order = list(trees) if rep % 2 == 0 else list(trees)[::-1]
            for name in order:
                shutil.rmtree(work / name / "step1_parent", ignore_errors=True)
                wall = run_job(trees[name], work / name, "step1")
                summary = json.loads((work / name / "step1_parent" / "train_early_exit_summary.json").read_text())
                runs[name].append({"train_seconds": summary["train_seconds_this_run"], "job_wall_s": wall,
                                   "last_logs": summary.get("last_logs")})
                print(f"round {rep + 1} {name}: {runs[name][-1]}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {n: statistics.median(r["train_seconds"] for r in rs) for n, rs in runs.items()}
    first, second = list(trees)
    payload = {"meta": {"env": common.environment(1), "trees": {n: str(p) for n, p in trees.items()},
                        "repeats": args.repeats, "note": args.note,
                        "command": " ".join(["benchmarks/benchmark_step1.py", *(argv or sys.argv[1:])])},
               "runs": runs, "median_train_seconds": medians, "speedup": medians[first] / medians[second]}
    env = payload["meta"]["env"]
    lines = ["# Step 1 of the main job: training time with two source trees", "",
             f"CPU {env['cpu_model']}, one thread per job (the main job's default), torch {env['torch']}; "
             f"{env['date_utc']}. 100 steps of batch 8 at 128x128 from the shipped parent; {args.repeats} runs per tree, "
             f"alternating. {args.note}", "",
             "| tree | step-1 training s (each run) | median s | job wall s (each run) | last logged loss |",
             "|---|---|---|---|---|"]
    for name, rs in runs.items():
        train = ", ".join(f"{r['train_seconds']:.1f}" for r in rs)
        wall = ", ".join(f"{r['job_wall_s']:.0f}" for r in rs)
        losses = ", ".join(str((r["last_logs"] or {}).get("loss", "-")) for r in rs)
        lines.append(f"| {name} (`{trees[name]}`) | {train} | {medians[name]:.1f} | {wall} | {losses} |")
    lines += ["", f"{first} / {second}: {payload['speedup']:.2f}x."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step1.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out / "step1.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
