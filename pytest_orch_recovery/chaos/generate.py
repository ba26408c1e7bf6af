"""Generated chaos campaigns: Hypothesis draws fault schedules, Faker writes the task text.

``--orch-campaign N`` adds N runs. Hypothesis draws each run's *shape* (how many tasks, how
many files, tests or not, PR or not) and its fault schedule swarm-style: first a random subset
of the catalogue, then 0-5 faults from that subset with their triggers, targets, attempts and
parameters. Faker, seeded from the drawn plan, writes the titles, prompts and file names,
hostile text included (quotes, ``$()``, backticks, newlines, unicode, very long). Everything
derives from the campaign seed (Hypothesis' ``@seed``, no example database), so a serial run
and every xdist worker collect the same N items.

A failing run is shrunk by :func:`shrink` to a minimal fault schedule (no single fault can be
removed and still fail) and printed as a scenario file with the command that replays it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from pytest_orch_recovery.chaos.faults import CATALOGUE, HONOURED_EVENTS, FaultSpec, Trigger
from pytest_orch_recovery.chaos.scenario import TRIGGER_KEYS, Scenario, ScenarioTask
from pytest_orch_recovery.engine.model import Reason, Task

PROFILE = "orch-campaign"
MAX_FAULTS = 5
MAX_TASKS = 3
MAX_FILES = 7
HOSTILE_KINDS = ("plain", "quotes", "shell", "newlines", "unicode", "long")

# The catalogue, minus the usage limit: fleet faults get an operator fix drawn alongside. A
# usage limit is left to the bundled scenarios so that a seed draws the runs it drew before
# the kind existed (sampled_from indexes the sorted list).
# Host faults need several hosts (a scenario's ``hosts``); left out, the runs a seed draws
# stay the same as before they joined the catalogue.
_KINDS = sorted(k for k in CATALOGUE if k != "usage_limit" and CATALOGUE[k].scope != "host")
_PARAMS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "api_overloaded": st.fixed_dictionaries({"count": st.sampled_from([3, 12, 20])}),
    "api_rate_limit": st.fixed_dictionaries({"retry_after": st.sampled_from([30, 90])}),
    "pr_create_fails": st.fixed_dictionaries(
        {
            "times": st.sampled_from([1, 2]),
            "error": st.sampled_from(["bad_credentials", "unreachable"]),
        }
    ),
    "kill": st.fixed_dictionaries({"oom": st.booleans()}),
}


def _profile() -> settings:
    """Hypothesis' built-in ``ci`` profile, extended: generation only (collection draws plans;
    it never shrinks or replays), no example database, seeded rather than derandomized."""
    if PROFILE not in settings._profiles:  # no public "is registered" API
        settings.register_profile(
            PROFILE,
            parent=settings.get_profile("ci"),
            derandomize=False,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            deadline=None,
        )
    return settings.get_profile(PROFILE)


@dataclass(frozen=True)
class FaultPlan:
    kind: str
    event: str | None  # None: the kind's default trigger
    n: int
    task: int | None  # index into the tasks; None: every task
    attempt: int | None
    params: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class RunPlan:
    """What Hypothesis draws for one generated run."""

    tasks: tuple[tuple[int, bool, bool, int], ...]  # (files, tests, pr, hostile kind)
    faults: tuple[FaultPlan, ...]
    fix_permissions: bool
    text_seed: int


@st.composite
def _fault_plans(draw: st.DrawFn, tasks: int) -> tuple[FaultPlan, ...]:
    # Swarm testing: each run uses a random subset of the catalogue.
    kinds = draw(st.lists(st.sampled_from(_KINDS), min_size=1, max_size=4, unique=True))
    plans = []
    for _ in range(draw(st.integers(0, MAX_FAULTS))):
        kind = draw(st.sampled_from(kinds))
        event = draw(st.none() | st.sampled_from(sorted(HONOURED_EVENTS[kind])))
        params = draw(_PARAMS.get(kind, st.just({})))
        plans.append(
            FaultPlan(
                kind=kind,
                event=event,
                n=draw(st.integers(1, 4)),
                task=draw(st.none() | st.integers(0, tasks - 1)),
                attempt=draw(st.sampled_from([1, 1, 1, 2, 2, None])),
                params=tuple(sorted(params.items())),
            )
        )
    return tuple(plans)


@st.composite
def run_plans(draw: st.DrawFn) -> RunPlan:
    count = draw(st.integers(1, MAX_TASKS))
    tasks = tuple(
        (
            draw(st.integers(1, MAX_FILES)),
            draw(st.booleans()),
            draw(st.booleans()),
            draw(st.integers(0, len(HOSTILE_KINDS) - 1)),
        )
        for _ in range(count)
    )
    return RunPlan(
        tasks,
        draw(_fault_plans(count)),
        draw(st.sampled_from([True, True, False])),
        draw(st.integers(0, 2**32 - 1)),
    )


def draw_plans(seed: int, count: int) -> list[RunPlan]:
    """``count`` plans, the same ones for the same seed (and Hypothesis version)."""
    plans: list[RunPlan] = []
    round_ = 0
    while len(plans) < count:

        @settings(_profile(), max_examples=count - len(plans))
        @hypothesis_seed(seed * 1000 + round_)
        @given(run_plans())
        def collect(plan: RunPlan) -> None:
            plans.append(plan)

        collect()
        round_ += 1
    return plans[:count]


# --------------------------------------------------------------------------- task text


def _hostile(kind: str, fake: Any) -> str:
    words = fake.words(nb=3)
    if kind == "quotes":
        return f"Fix \"{words[0]}\" in '{words[1]}' isn't {words[2]}"
    if kind == "shell":
        return f"Add $({words[0]} --now) and `rm -rf ~/{words[1]}`; {words[2]} && echo $HOME"
    if kind == "newlines":
        return f"{fake.sentence()}\n\nThen: {fake.sentence()}\r\n- {words[0]}"
    if kind == "unicode":
        return f"Añadir {words[0]} — 日本語のテスト 🚀 ẞtraße {words[1]} \u202e{words[2]}"
    if kind == "long":
        return " ".join(fake.paragraphs(nb=40))
    return str(fake.sentence(nb_words=6)).rstrip(".")


def _task(run: int, index: int, shape: tuple[int, bool, bool, int], fake: Any) -> Task:
    files, tests, pr, hostile = shape
    kind = HOSTILE_KINDS[hostile]
    folder = fake.word()
    names = [f"{folder}/{fake.unique.word()}_{j}.py" for j in range(files)]
    if kind == "unicode" and names:
        names[0] = f"{folder}/naïve café {index}.md"
    title = _hostile(kind, fake)
    return Task(
        task_id=f"g{run}-t{index}",
        title=title,
        deliverables=tuple(names),
        tests=f"pytest -q {folder}" if tests else None,
        wants_pr=pr,
        prompt=f"{title}\n\n{_hostile(kind, fake)}",
    )


def run_name(index: int, count: int) -> str:
    """``gen-0007``: fixed width for the campaign, so ``-k gen-0007`` selects one run."""
    return f"gen-{index:0{max(4, len(str(count - 1)))}d}"


def build_scenario(plan: RunPlan, index: int, count: int) -> Scenario:
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(plan.text_seed)
    tasks = [_task(index, i, shape, fake) for i, shape in enumerate(plan.tasks)]
    faults = []
    for number, fp in enumerate(plan.faults, 1):
        trigger = None if fp.event is None else Trigger(fp.event, n=fp.n)
        faults.append(
            FaultSpec(
                fp.kind,
                trigger,
                # A fleet fault (the dispatcher's config, the coordinator) hits every task.
                task="*"
                if fp.task is None or CATALOGUE[fp.kind].scope == "fleet"
                else tasks[fp.task].task_id,
                attempt=fp.attempt,
                params=dict(fp.params),
                fault_id=f"f{number}",
            )
        )
    actions: tuple[str, ...] = ()
    # Permission faults escalate to a person by design; most runs have the operator fix.
    if plan.fix_permissions and any(f.entry.expected is Reason.PERMISSION for f in faults):
        actions = ("fix_permission_flag",)
    return Scenario(
        name=run_name(index, count),
        tasks=tuple(ScenarioTask(t) for t in tasks),
        faults=tuple(faults),
        operator_actions=actions,
        description="generated by --orch-campaign",
        generated=True,
    )


def generated_scenarios(seed: int, count: int) -> list[Scenario]:
    return [build_scenario(plan, i, count) for i, plan in enumerate(draw_plans(seed, count))]


# --------------------------------------------------------------------------- shrinking


def shrink(scenario: Scenario, fails: Callable[[Scenario], bool]) -> Scenario:
    """The smallest fault schedule of ``scenario`` that still ``fails``: faults are removed
    one at a time while the failure persists, then triggers are simplified to their first
    occurrence, until no single step keeps it failing (a 1-minimal schedule)."""
    current = scenario
    changed = True
    while changed:
        changed = False
        for i in range(len(current.faults)):
            candidate = replace(current, faults=current.faults[:i] + current.faults[i + 1 :])
            if fails(candidate):
                current, changed = candidate, True
                break
        if changed:
            continue
        for i, spec in enumerate(current.faults):
            if spec.trigger is not None and spec.trigger.n > 1 and spec.trigger.path is None:
                simpler = replace(spec, trigger=Trigger(spec.trigger.event))
                candidate = replace(
                    current, faults=(*current.faults[:i], simpler, *current.faults[i + 1 :])
                )
                if fails(candidate):
                    current, changed = candidate, True
                    break
    return current


_EVENT_KEYS = {event: key for key, event in TRIGGER_KEYS.items()}


def scenario_toml(scenario: Scenario) -> str:
    """``scenario`` as a scenario file (the schema of docs/scenarios.md).

    >>> s = Scenario("demo", (ScenarioTask(Task("t1", 'say "hi"', ("a.md",))),),
    ...              (FaultSpec("sigint", Trigger("file_written", n=1), task="t1"),))
    >>> print(scenario_toml(s))  # doctest: +ELLIPSIS
    name = "demo"
    <BLANKLINE>
    [[tasks]]
    id = "t1"
    title = "say \\"hi\\""
    ...
    """

    def q(value: object) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = [f"name = {q(scenario.name)}"]
    if scenario.operator_actions:
        lines.append(f"operator_actions = {q(list(scenario.operator_actions))}")
    if scenario.crash_after_event is not None:
        lines.append(f"crash_after_event = {scenario.crash_after_event}")
    for key in ("attempt_timeout", "stall_window", "max_live_agents", "max_attempts"):
        if getattr(scenario, key) is not None:
            lines.append(f"{key} = {q(getattr(scenario, key))}")
    settings = {k: v for k, v in dataclasses.asdict(scenario.policy).items() if v is not None}
    if settings:
        lines += ["", "[policy]", *(f"{k} = {q(v)}" for k, v in sorted(settings.items()))]
    for st_task in scenario.tasks:
        t = st_task.task
        lines += [
            "",
            "[[tasks]]",
            f"id = {q(t.task_id)}",
            f"title = {q(t.title)}",
            f"deliverables = {q(list(t.deliverables))}",
        ]
        if t.tests:
            lines.append(f"tests = {q(t.tests)}")
        if not t.wants_pr:
            lines.append("pr = false")
        if st_task.agent:
            lines.append(f"agent = {q(st_task.agent)}")
    for spec in scenario.faults:
        lines += ["", "[[faults]]", f"kind = {q(spec.kind)}", f"task = {q(spec.task)}"]
        lines.append(f"attempt = {q('all') if spec.attempt is None else spec.attempt}")
        if spec.trigger is not None:
            key = _EVENT_KEYS[spec.trigger.event]
            value = q(spec.trigger.path) if spec.trigger.path else str(spec.trigger.n)
            lines.append(f"{key} = {value}")
        if spec.params:
            inner = ", ".join(f"{k} = {q(v)}" for k, v in sorted(spec.params.items()))
            lines.append(f"params = {{ {inner} }}")
    return "\n".join(lines) + "\n"
