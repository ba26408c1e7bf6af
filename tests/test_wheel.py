"""The plugin as a user meets it: a wheel built from this checkout, installed into a fresh
virtualenv, run in an empty git repository that has never seen this project, with the commands
of docs/ci.md as that page writes them.

Nothing of this checkout is importable in those runs: PYTHONPATH and the pytest variables are
removed, the virtualenv has no system site-packages, and each run's header must name the
bundled scenarios inside the virtualenv's site-packages.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
CI_DOC = REPO / "docs" / "ci.md"
REQUIREMENT = "pytest-orch-recovery==0.1.0"  # the install step's package, as docs/ci.md names it
BOUND = 1800  # seconds: a generous bound on one campaign on a loaded machine, never a limit


def _fenced(text: str, language: str) -> list[str]:
    """The fenced blocks of ``language``, dedented (a block may sit in a list item)."""
    blocks = re.findall(rf"^( *)```{language}\n(.*?)^\1```", text, flags=re.S | re.M)
    return [textwrap.dedent(body) for _, body in blocks]


def workflow_run_steps(text: str) -> list[str]:
    """The ``run:`` steps of docs/ci.md's workflow, each as the shell would get it."""
    (workflow,) = [b for b in _fenced(text, "yaml") if "jobs:" in b]
    steps: list[str] = []
    lines = workflow.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)(?:- )?run: (.*)$", line)
        if match is None:
            continue
        indent, value = len(match.group(1)), match.group(2)
        if value.strip() != "|":
            steps.append(value)
            continue
        block = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following.strip())
        steps.append("\n".join(block).strip())
    return steps


def replay_command(text: str) -> str:
    """The replay command of docs/ci.md's "When the gate fails", with its ``<seed>``."""
    (command,) = [b.strip() for b in _fenced(text, "bash") if "--orch-seed <seed>" in b]
    return command


def test_the_doc_s_workflow_is_what_the_wheel_test_runs() -> None:
    """Fast: the extraction finds the install and campaign steps, so the slow test below
    cannot pass by running nothing."""
    text = CI_DOC.read_text(encoding="utf-8")
    steps = workflow_run_steps(text)
    assert any(REQUIREMENT in s for s in steps)
    campaign = [s for s in steps if "--orch-chaos" in s]
    assert len(campaign) == 1
    for part in ("--orch-fleet fleet.toml", "-p xdist -n auto", "--orch-report=orch.html"):
        assert part in campaign[0]
    assert "--junitxml=" in campaign[0]
    assert replay_command(text).startswith("pytest --orch-chaos --orch-seed <seed>")


# --------------------------------------------------------------------------- the slow part


@dataclass
class Venv:
    root: Path
    wheel: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a user's shell with the virtualenv active: nothing of this
        checkout or of the outer pytest."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PYTEST_", "PYTHON", "TMUX", "ORCH_", "GITHUB_"))
            and k not in ("VIRTUAL_ENV",)
        }
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', os.defpath)}"
        env["VIRTUAL_ENV"] = str(self.root)
        env.update(extra)
        return env

    def shell(self, command: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=cwd,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=BOUND,
            check=False,
        )


def _build_wheel(out: Path) -> Path:
    """``pip wheel`` of a copy of this checkout (so no build/ or egg-info lands in it). The
    build runs isolated, its requirements (setuptools>=68, wheel) from the package index as
    for anyone building it: the interpreter's own setuptools may be older and lack wheel."""
    source = out / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".tools", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".venv"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(out / "dist"),
            str(source),
        ],
        check=True,
        timeout=BOUND,
        capture_output=True,
    )
    (wheel,) = (out / "dist").glob("pytest_orch_recovery-*.whl")
    return wheel


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    out = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(out)
    root = out / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=BOUND)
    yield Venv(root, wheel)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An ordinary repository that has never seen this project."""
    path = tmp_path / "my-orchestrator"
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / "README.md").write_text("# my orchestrator\n")
    return path


def _summary(stdout: str) -> str:
    """The gate's figures line: ``seed N, tier T: R scenario runs, … wrong of F failed``."""
    (line,) = [s for s in stdout.splitlines() if re.match(r"seed \d+, tier \w+: ", s)]
    return line


def _site_packages_scenarios(venv: Venv, stdout: str) -> None:
    (header,) = [s for s in stdout.splitlines() if s.startswith("orch-chaos scenarios: ")]
    bundled = len(list((REPO / "pytest_orch_recovery" / "chaos" / "scenarios").glob("*.toml")))
    assert f"bundled {bundled} ({venv.root}/lib/" in header, header
    assert "/site-packages/pytest_orch_recovery/chaos/scenarios)" in header, header


MY_SCENARIO = """
name = "my-docs-task"

[[tasks]]
id = "notes"
title = "Write the release notes"
deliverables = ["NOTES.md"]

[tasks.expect]
outcome = "recovered"
reasons = ["sigint"]

[[faults]]
kind = "sigint"
task = "notes"
after_file = "NOTES.md"
"""


def test_from_a_wheel_in_a_fresh_virtualenv_the_campaign_gates_a_user_s_repository(
    venv: Venv, project: Path
) -> None:
    text = CI_DOC.read_text(encoding="utf-8")
    steps = workflow_run_steps(text)

    # 1. The install step, with the wheel's path for the package name; its dependencies come
    #    from the package index.
    (install,) = [s for s in steps if REQUIREMENT in s]
    done = venv.shell(install.replace(REQUIREMENT, str(venv.wheel)), project)
    assert done.returncode == 0, done.stderr
    where = venv.shell("python -c 'import pytest_orch_recovery as p; print(p.__file__)'", project)
    assert where.stdout.startswith(str(venv.root)), where.stdout

    # 2. The README's main job in a repository with no scenario of its own.
    plain = venv.shell("python -m pytest --orch-chaos -p no:cacheprovider", project)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    _site_packages_scenarios(venv, plain.stdout)
    assert "PASS recovery_rate: " in plain.stdout and "FAIL" not in plain.stdout
    assert (project / "orch-report.md").is_file()

    # 3. docs/ci.md's campaign step under a production fleet file: a command-template agent
    #    (the installed sim agent's console script) and a changed policy.
    agent = (
        f"{venv.bin}/orch-sim-agent -p --output-format json --dangerously-skip-permissions "
        "{prompt}"
    )
    (project / "fleet.toml").write_text(
        'repository = "/srv/my-orchestrator"   # production checkout: absent here\n'
        f'agent = "{agent}"\n'
        "max_attempts = 3\n"
        "[policy]\nbackoff_base = 0.5\nbreaker_window = 300\n",
        encoding="utf-8",
    )
    summary_file = project / "step-summary.md"
    (campaign,) = [s for s in steps if "--orch-chaos" in s]
    ran = venv.shell(campaign, project, GITHUB_STEP_SUMMARY=str(summary_file))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert re.search(r"created: (\d+)/\1 workers", ran.stdout), ran.stdout[:2000]
    assert f"orch-chaos fleet file fleet.toml: agent {agent}, " in ran.stdout
    # attempt-budget proves exactly four attempts: it keeps its own budget, and says so.
    assert "pinned by attempt-budget: max_attempts = 4 (the scenario pins it; fleet file: 3)" in (
        ran.stdout
    )
    page = (project / "orch.html").read_text(encoding="utf-8")
    for shown in ("orch-sim-agent -p --output-format json", "max_attempts 3"):
        assert shown in page
    for number in ("backoff_base 0.5", "breaker_window 300"):
        assert number in page and number in summary_file.read_text(encoding="utf-8")
    for artifact in ("orch.html", "orch.jsonl", "orch-junit.xml"):
        assert (project / artifact).stat().st_size > 0
    junit = (project / "orch-junit.xml").read_text(encoding="utf-8")
    seed = re.search(r'name="orch_seed" value="(\d+)"', junit)
    assert seed is not None and 'name="orch_verdict" value="pass"' in junit

    # 4. The replay command of "When the gate fails", with that seed: the same figures.
    replay = replay_command(text).replace("<seed>", seed.group(1))
    again = venv.shell(f"python -m {replay}", project)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _summary(again.stdout) == _summary(ran.stdout)

    # 5. A scenario of the project's own runs beside the bundled ones (two selected, so the
    #    run stays short: the project's and task-agent-5030).
    (project / "scenarios").mkdir()
    (project / "scenarios" / "mine.toml").write_text(MY_SCENARIO, encoding="utf-8")
    beside = venv.shell(
        "python -m pytest --orch-chaos -v -p no:cacheprovider -k 'my-docs-task or 5030'", project
    )
    assert beside.returncode == 0, beside.stdout + beside.stderr
    _site_packages_scenarios(venv, beside.stdout)
    assert f"+ project 1 ({project / 'scenarios'})" in beside.stdout
    assert "scenarios/mine.toml::my-docs-task PASSED" in beside.stdout
    assert "orch-bundled/task-agent-5030.toml::task-agent-5030 PASSED" in beside.stdout
