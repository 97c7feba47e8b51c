"""Trace feedback through each backend, measured: tracekit's loop, GEPA and OpenEvolve on one offline target.

    .venv/bin/python bench/backends_feedback.py                      # 3 seeds, at most 10 experiments each
    .venv/bin/python bench/backends_feedback.py --seeds 1 --only gepa openevolve

The target is bench/targets/defects (see bench/traces_vs_scores.py): records.py with five
independent defects, metric val.accuracy from its eval suite, run in the sandbox. Each optimizer
runs it twice per seed, with trace feedback and with scores only:

- tracekit's loop: `Optimizer` with `--feedback traces | scores` (traces_vs_scores.run_once);
- GEPA: `gepa.optimize_anything` with `tracekit.backends.gepa.anything_evaluator(feedback=...)`;
  with traces its side information holds the run's digest, with scores only its status and metrics;
- OpenEvolve: `openevolve.run_evolution` with `tracekit.backends.openevolve.SandboxEvaluator(feedback=...)`;
  with traces its artifacts are the digest's sections, with scores none.

The proposer is the same offline stand-in for an LLM in all three (traces_vs_scores.CATALOGUE: five
real fixes each tied to the error text it cures, five decoys): it reads only what the optimizer
would send its LLM (the loop's prompt, GEPA's reflective dataset, OpenEvolve's prompt) and picks
a seeded random untried edit among those whose evidence is there, else among all untried edits.
So the figures measure whether each integration carries the evidence to the proposer; they are
not a claim about an LLM. Printed: experiments to the optimum (val accuracy 1.0) per optimizer and
mode (mean over seeds; a seed that never got there counts as max + 1), and how many seeds got there.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from traces_vs_scores import CATALOGUE, FILE, TARGET, Edit, run_once  # noqa: E402

import tracekit  # noqa: E402
from tracekit.backends import Experiments  # noqa: E402

COMMAND = ["python", "-m", "tracekit", "eval", "run", "evals.py", "--split", "train", "--split", "val", "-f", "json"]
METRIC = "val.accuracy"


def pick(text_seen: str, current: str, tried: set[str], rng: random.Random) -> Edit | None:
    untried = [e for e in CATALOGUE if e.name not in tried and e.search in current]
    if not untried:
        return None
    matched = [e for e in untried if e.evidence and re.search(e.evidence, text_seen)]
    return rng.choice(matched or untried)


def flat(value: Any) -> str:
    """Every string in a nested structure, joined: the text an LLM would read (a repr would escape quotes)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(flat(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return "\n".join(flat(v) for v in value)
    return str(value)


def reached(exps: Experiments) -> tuple[int | None, float]:
    """(experiments after the first until val accuracy 1.0, or None; the best val accuracy seen)."""
    rows = exps.rows()
    best = max((float(r["metric"]) for r in rows if r.get("metric") is not None), default=0.0)
    for i, r in enumerate(rows[1:], 1):
        if r.get("metric") is not None and float(r["metric"]) >= 1.0 - 1e-9:
            return i, best
    return None, best


def run_gepa(feedback: str, seed: int, max_experiments: int, work: Path) -> tuple[int | None, float]:
    from gepa.optimize_anything import EngineConfig, GEPAConfig, ReflectionConfig, optimize_anything

    from tracekit.backends.gepa import anything_evaluator

    root = work / f"gepa-{feedback}-{seed}"
    shutil.copytree(TARGET, root, ignore=shutil.ignore_patterns(".tracekit", "__pycache__"))
    exps = Experiments(f"gepa-{feedback}-{seed}", metric=METRIC, proposer="gepa")
    evaluate = anything_evaluator(exps, COMMAND, workspace=root, text_file=FILE, budget_s=120, feedback=feedback)
    rng, tried = random.Random(f"{seed}"), {}  # edits proposed per parent: never the same one twice on it

    def propose(candidate: dict[str, str], reflective_dataset: Any, components: list[str]) -> dict[str, str]:
        key = components[0]
        done = tried.setdefault(candidate[key], set())
        edit = pick(flat(reflective_dataset), candidate[key], done, rng)
        if edit is None:
            return {key: candidate[key]}
        done.add(edit.name)
        return {key: candidate[key].replace(edit.search, edit.replace, 1)}

    optimize_anything((root / FILE).read_text(), evaluator=evaluate, objective="Make every eval case pass.",
                      config=GEPAConfig(engine=EngineConfig(max_candidate_proposals=max_experiments, cache_evaluation=True,
                                                            run_dir=str(root / "gepa"), seed=seed),
                                        reflection=ReflectionConfig(custom_candidate_proposer=propose, reflection_lm=None)))
    return reached(exps)


class EvidenceClient:
    """OpenEvolve's LLM interface: a SEARCH/REPLACE diff for the edit the prompt's evidence points to.

    It reads OpenEvolve's diff prompt as an LLM would: the current program (the code block under
    "# Current Program") and what is said about it above the evolution history (its metrics and
    artifacts). Edits still applicable to that program are the untried ones.
    """

    def __init__(self, cfg: Any) -> None:
        self.rng = random.Random(os.environ.get("BENCH_SEED", "0"))

    async def generate(self, prompt: str, **kw: Any) -> str:
        return await self.generate_with_context("", [{"role": "user", "content": prompt}])

    async def generate_with_context(self, system_message: str, messages: list[dict[str, str]], **kw: Any) -> str:
        prompt = "\n".join(str(m.get("content")) for m in messages)
        about = prompt.split("# Program Evolution History")[0]
        code = re.search(r"# Current Program\n```\w*\n(.*?)\n```", prompt, re.S)
        edit = pick(about, code.group(1) if code else prompt, set(), self.rng)
        if os.environ.get("BENCH_LOG"):  # what it read and chose, for debugging the stand-in
            fitness = re.findall(r"Fitness: [\d.]+", about)
            with open(os.environ["BENCH_LOG"], "a") as log:
                log.write(f"{edit.name if edit else None} {fitness}\n")
        if edit is None:
            return "No change."
        return f"<<<<<<< SEARCH\n{edit.search}\n=======\n{edit.replace}\n>>>>>>> REPLACE\n"


def evidence_client(cfg: Any) -> EvidenceClient:
    return EvidenceClient(cfg)


def run_openevolve(feedback: str, seed: int, max_experiments: int, work: Path) -> tuple[int | None, float]:
    import openevolve
    from openevolve.config import Config, LLMModelConfig

    from tracekit.backends.openevolve import SandboxEvaluator

    root = work / f"oe-{feedback}-{seed}"
    shutil.copytree(TARGET, root, ignore=shutil.ignore_patterns(".tracekit", "__pycache__"))
    exps = Experiments(f"oe-{feedback}-{seed}", metric=METRIC, proposer="openevolve")
    evaluator = SandboxEvaluator(exps, COMMAND, program_file=FILE, workspace=root, budget_s=120, feedback=feedback)
    config = Config()
    config.random_seed = seed
    config.llm.models = [LLMModelConfig(name="evidence", init_client=evidence_client)]
    config.llm.evaluator_models = list(config.llm.models)
    config.evaluator.cascade_evaluation = False
    config.evaluator.parallel_evaluations = 1
    config.evaluator.timeout = 300
    config.database.num_islands = 1  # one lineage: with several, each island starts again from the seed
    os.environ["BENCH_SEED"] = str(seed)
    openevolve.run_evolution((root / FILE).read_text(), evaluator, config=config, iterations=max_experiments,
                             output_dir=str(root / "oe"), cleanup=False, target_score=1.0)
    return reached(exps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--max-experiments", type=int, default=10)
    ap.add_argument("--only", nargs="*", default=["loop", "gepa", "openevolve"])
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tracekit-bench-backends-"))
    tracekit.configure(home=work / "home")
    results: dict[tuple[str, str], list[tuple[int | None, float]]] = {}
    try:
        for seed in range(args.seeds):
            for name in args.only:
                for feedback in ("traces", "scores"):
                    if name == "loop":
                        res = run_once(feedback, seed, args.max_experiments, False, None, work)
                        got = (res["reached"], res["best"])
                    elif name == "gepa":
                        got = run_gepa(feedback, seed, args.max_experiments, work)
                    else:
                        got = run_openevolve(feedback, seed, args.max_experiments, work)
                    results.setdefault((name, feedback), []).append(got)
                    print(f"seed {seed} {name:10s} {feedback:6s}: optimum after {got[0] or '-'} experiments, "
                          f"best val accuracy {got[1]:.3f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"seeds: {args.seeds}\nmax_experiments: {args.max_experiments}")
    for (name, feedback), got in results.items():
        counted = [g if g is not None else args.max_experiments + 1 for g, _ in got]
        print(f"{name}_{feedback}_experiments_to_optimum_mean: {statistics.mean(counted):.2f} "
              f"(reached {sum(g is not None for g, _ in got)}/{len(got)}); "
              f"best_val_accuracy_mean: {statistics.mean(b for _, b in got):.3f}")


if __name__ == "__main__":
    main()
