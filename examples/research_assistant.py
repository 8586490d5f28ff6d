"""A research assistant (ORCHESTRATOR/WORKER): retrieval-augmented research over a small
local document set (``examples/research_docs``).

A planner (a model asked for a structured plan) splits the question at run time into
subtasks for three workers, chosen by capability: researchers (agents with ``search_docs``
and ``read_doc`` tools; one subtask per topic, run concurrently), an analyst (a plain
function: key figures and sources) and a writer (an agent drafting from what the others
found). A synthesiser (a model) writes the answer. The plan, every subtask's result and the
synthesis are durable: a run resumed after a crash redoes no finished subtask.

Offline (the default) ScriptedModels play the planner, researchers, writer and synthesiser by
rules. Set ``CADENZA_MODEL`` (``openai:gpt-4o-mini``, ``ollama:llama3.2``, ...) to use a real
model for all of them.

Run it:
    cadenza run examples/research_assistant.py \
        --input '{"task": "How do batteries help solar and wind power?"}'
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any, TypedDict

from cadenza import (
    ChatModel,
    ExecutionContext,
    Message,
    ScriptedModel,
    Workflow,
    WorkflowConfiguration,
    tool,
)

DOCS = Path(__file__).parent / "research_docs"


class ResearchState(TypedDict, total=False):
    task: str
    results: list[dict[str, Any]]
    answer: str


@cache
def documents() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(DOCS.glob("*.md"))}


def _words(text: str) -> set[str]:
    """Lower-case words of three letters or more, crudely singular ("batteries": "battery")."""
    words = re.findall(r"[a-z]{3,}", text.lower())
    return {re.sub(r"ies$", "y", w).removesuffix("s") for w in words} - _STOP


_STOP = {"the", "and", "how", "what", "does", "with", "that", "for", "they", "this", "help"}


@tool
def search_docs(query: str, limit: int = 3) -> list[dict[str, Any]]:
    """Search the documents by keyword; best matches first.

    Args:
        query: Words to look for.
        limit: At most this many hits.
    """
    wanted = _words(query)
    hits = []
    for name, text in documents().items():
        title = text.splitlines()[0].lstrip("# ")
        score = len(wanted & _words(text)) + 2 * len(wanted & _words(title))
        if score:
            hits.append({"doc": name, "title": title, "score": score})
    hits.sort(key=lambda h: (-h["score"], h["doc"]))
    return hits[:limit]


@tool
def read_doc(doc: str) -> str:
    """Read one document in full.

    Args:
        doc: Its name, as search_docs gives it (e.g. "solar.md").
    """
    if doc not in documents():
        raise LookupError(f"no document {doc!r}; search_docs lists the names")
    return documents()[doc]


def analyse(state: ResearchState, ctx: ExecutionContext) -> dict[str, Any]:
    """The analyst: the figures and sources in the researchers' findings."""
    found = " ".join(str(v) for v in (ctx.item.get("inputs") or {}).values())
    figures = [s.strip() for s in re.split(r"(?<=\.)\s+", found) if re.search(r"\d", s)]
    sources = sorted(set(re.findall(r"\[source: ([\w.]+)\]", found)))
    return {
        "figures": [re.sub(r"\s*\[source: [\w.]+\]", "", f) for f in figures],
        "sources": sources,
    }


# -- the offline models ------------------------------------------------------------------------


def plan(messages: list[Message]) -> Any:
    """Planner: one research subtask per matching document, then analysis, then writing."""
    task = messages[-1].content
    topics = [hit["title"] for hit in search_docs(task, limit=3)]
    research = [
        {"id": f"r{i}", "capability": "research", "instructions": f"Research {t.lower()}"}
        for i, t in enumerate(topics, 1)
    ]
    ids = [r["id"] for r in research]
    later = [
        {"id": "a", "capability": "analysis", "instructions": "Key figures", "depends_on": ids},
        {
            "id": "w",
            "capability": "writing",
            "instructions": "Write a short answer",
            "depends_on": [*ids, "a"],
        },
    ]
    return {"output": {"subtasks": research + later}}


def research(messages: list[Message]) -> Any:
    """Researcher: search, read the best document, report the sentences that matter."""
    request = next(m.content for m in messages if m.role == "user")
    last = messages[-1]
    if last.role == "user":
        topic = request.split("\n", 1)[0].removeprefix("Research ")
        return {"tool_calls": [{"name": "search_docs", "arguments": {"query": topic}}]}
    if last.name == "search_docs":
        best = json.loads(last.content)[0]["doc"]
        return {"tool_calls": [{"name": "read_doc", "arguments": {"doc": best}}]}
    doc = messages[-2].tool_calls[0].arguments["doc"]
    wanted = _words(request)
    sentences = re.split(r"(?<=\.)\s+", last.content.split("\n", 2)[-1].replace("\n", " "))
    ranked = sorted(sentences, key=lambda s: -len(wanted & _words(s)))[:2]
    ranked += [s for s in sentences if re.search(r"\d", s) and s not in ranked][:1]
    chosen = [s for s in sentences if s in ranked]  # in the document's order
    return " ".join(chosen) + f" [source: {doc}]"


def write(messages: list[Message]) -> Any:
    """Writer: the researchers' findings, then the analyst's figures."""
    request = messages[-1].content
    found = re.findall(r"^\[r\d+\] (.*)$", request, re.M)
    analysis = re.search(r"^\[a\] (.*)$", request, re.M)
    figures = json.loads(analysis.group(1))["figures"] if analysis else []
    leads = [re.split(r"(?<=\.)\s+", re.sub(r"\s*\[source: [\w.]+\]", "", f))[0] for f in found]
    extra = [f for f in figures if f not in leads]
    return " ".join(leads) + (f" Key figures: {' '.join(extra)}" if extra else "")


def synthesize(messages: list[Message]) -> Any:
    """Synthesiser: the writer's draft, with the analyst's sources."""
    request = messages[-1].content
    draft = re.search(r"\(writing\) [^\n]*\n(.*?)(?:\n\n\[|\Z)", request, re.S)
    sources = re.search(r"\(analysis\) [^\n]*\n(.*?)(?:\n\n\[|\Z)", request, re.S)
    cited = json.loads(sources.group(1))["sources"] if sources else []
    body = draft.group(1).strip() if draft else "The research found nothing to report."
    return f"{body}\n\nSources: {', '.join(cited) or 'none'}"


def make_models() -> dict[str, ChatModel]:
    if os.environ.get("CADENZA_MODEL"):
        from cadenza.agents.config import load_model

        model = load_model()
        return dict.fromkeys(("planner", "researcher", "writer", "synthesizer"), model)
    return {
        "planner": ScriptedModel(rules=[plan], name="scripted:planner"),
        "researcher": ScriptedModel(rules=[research], name="scripted:researcher"),
        "writer": ScriptedModel(rules=[write], name="scripted:writer"),
        "synthesizer": ScriptedModel(rules=[synthesize], name="scripted:synthesizer"),
    }


MODELS = make_models()

workflow = Workflow(
    "research_assistant",
    state=ResearchState,
    config=WorkflowConfiguration(timeout=600),
    description="Plan research over local documents, run it with workers, synthesise.",
)
workflow.worker(
    "researcher",
    capability="research",
    description="finds what the documents say about one topic, citing the document",
    model=MODELS["researcher"],
    tools=[search_docs, read_doc],
    system=(
        "You research one topic in the document set. Search, read the best document, and "
        "answer in two or three sentences ending with [source: NAME]."
    ),
    max_steps=5,
    retries=2,
    retry_delay=1.0,
)
workflow.worker(
    "analyst",
    capability="analysis",
    description="collects key figures and the sources cited by earlier research",
    handler=analyse,
)
workflow.worker(
    "writer",
    capability="writing",
    description="writes a short answer from the results of earlier subtasks",
    model=MODELS["writer"],
    system="You write a short, plain answer from the results you are given; no new facts.",
    max_steps=2,
    retries=2,
    retry_delay=1.0,
)
workflow.orchestrator(
    "research",
    planner=MODELS["planner"],
    synthesizer=MODELS["synthesizer"],
    max_concurrent=3,
    on_subtask_failure="report",
    input_key="task",
    output_key="answer",
    results_key="results",
    retries=2,
    retry_delay=1.0,
)


if __name__ == "__main__":
    import asyncio

    from cadenza import Engine

    async def main() -> None:
        async with Engine("memory") as engine:
            task = "How do batteries help solar and wind power?"
            result = await engine.run(workflow, {"task": task})
            print(result.status, result.error or "")
            print(result.state.get("answer"))

    asyncio.run(main())
