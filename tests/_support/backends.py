"""The offline target the backend tests (and bench/backends_feedback.py) optimize, and a scripted proposer.

The target is an agent whose one text component names the lookup table its tool reads. The seed
names a retired table: every case fails with the tool's LookupError, which says where the data
went. The score alone (0 on every case) does not say it; the case's trace does (the tool call, the
stack trace). `ScriptedLM` stands in for the reflection / mutation LLM: it fixes the component when
its prompt carries that evidence, and otherwise guesses table names in a fixed order, so runs with
and without trace feedback can be counted against each other, deterministically and offline.
"""

from __future__ import annotations

import re
from typing import Any

import tracekit
from tracekit.evals import Sample, Score, Task

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi", "Peru": "Lima", "Chile": "Santiago", "Spain": "Madrid"}
SEED = "Answer with the capital city. table: capitals"
FIXED = "Answer with the capital city. table: capitals_v2"
GUESSES = ["capital", "capitals_v1", "cities", "world_capitals", "capitals2", "capitals_2024", "capitals_v2"]
HINT = re.compile(r"moved to '([a-z0-9_]+)'")


@tracekit.trace(kind="tool")
def lookup(table: str, country: str) -> str:
    if table != "capitals_v2":
        raise LookupError(f"table {table!r} was retired in the schema migration; its rows moved to 'capitals_v2'")
    return CAPITALS[country]


def table_of(instructions: str) -> str:
    m = re.search(r"table:\s*([A-Za-z0-9_]+)", instructions)
    return m.group(1) if m else "capitals"


def agent_for(instructions: str) -> Any:
    @tracekit.trace(kind="agent", name="capital_agent")
    def agent(country: str) -> str:
        return lookup(table_of(instructions), country)

    return agent


def exact(output: Any, sample: Sample) -> Score:
    ok = str(output).strip() == str(sample.target)
    return Score(1.0 if ok else 0.0, passed=ok, explanation=None if ok else f"expected {sample.target}")


def samples(split: str = "train") -> list[Sample]:
    return [Sample(country, capital, id=country.lower(), split=split) for country, capital in CAPITALS.items()]


def task_for(candidate: Any) -> Task:
    """The eval task of a candidate (`tracekit.backends.Candidate`: its `prompt` component)."""
    return Task(samples(), solver=agent_for(candidate.files["prompt"]), scorers=[exact], name="capitals", retries=0)


class ScriptedLM:
    """A reflection LLM as a callable (GEPA's `LanguageModel`): reads the prompt, answers a fenced text."""

    def __init__(self) -> None:
        self.prompts: list[str] = []
        self.guess = 0

    def propose(self, prompt: str) -> str:
        self.prompts.append(prompt)
        m = HINT.search(prompt)
        if m:
            return f"Answer with the capital city. table: {m.group(1)}"
        table = GUESSES[min(self.guess, len(GUESSES) - 1)]
        self.guess += 1
        return f"Answer with the capital city. table: {table}"

    def __call__(self, prompt: str | list[dict[str, Any]]) -> str:
        text = prompt if isinstance(prompt, str) else "\n".join(str(m.get("content")) for m in prompt)
        return "```\n" + self.propose(text) + "\n```"


# -- OpenEvolve: the program it evolves, and its LLM as a custom client (`LLMModelConfig.init_client`) -----

PROGRAM = '''# EVOLVE-BLOCK-START
TABLE = "capitals"
# EVOLVE-BLOCK-END
import tracekit

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi"}


NEW = "capitals" + "_v" + str(2)  # built, so the program's text never spells what only its trace says


@tracekit.trace(kind="tool")
def lookup(table, country):
    if table != NEW:
        raise LookupError(f"table {table!r} was retired in the schema migration; its rows moved to {NEW!r}")
    return CAPITALS[country]


right = sum(lookup(TABLE, c) == v for c, v in CAPITALS.items())
print("score:", right / len(CAPITALS))
'''
PROMPT_LOG = "TRACEKIT_TEST_PROMPT_LOG"  # the scripted client appends every prompt it gets here (workers are processes)


class ScriptedEvolveLLM:
    """OpenEvolve's LLM interface (`generate`, `generate_with_context`), answering SEARCH/REPLACE diffs."""

    def __init__(self, cfg: Any) -> None:
        self.model = getattr(cfg, "name", "scripted")
        self.lm = ScriptedLM()

    async def generate(self, prompt: str, **kwargs: Any) -> str:
        return await self.generate_with_context("", [{"role": "user", "content": prompt}], **kwargs)

    async def generate_with_context(self, system_message: str, messages: list[dict[str, str]], **kwargs: Any) -> str:
        import os

        prompt = system_message + "\n" + "\n".join(str(m.get("content")) for m in messages)
        if os.environ.get(PROMPT_LOG):
            with open(os.environ[PROMPT_LOG], "a") as f:
                f.write(prompt + "\n\x00\n")
        table = table_of(self.lm.propose(prompt))
        return f'<<<<<<< SEARCH\nTABLE = "capitals"\n=======\nTABLE = "{table}"\n>>>>>>> REPLACE\n'


def scripted_client(cfg: Any) -> ScriptedEvolveLLM:
    return ScriptedEvolveLLM(cfg)
