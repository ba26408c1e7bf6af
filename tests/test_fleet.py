"""The fleet file, task files and the spool, without processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_orch_recovery.fleet.config import FleetConfigError, parse_fleet
from pytest_orch_recovery.fleet.intake import Spool, TaskFileError, parse_tasks
from pytest_orch_recovery.infra.agents import AgentConfig
from pytest_orch_recovery.infra.git import create_repo_with_origin
from pytest_orch_recovery.infra.settings import merge_hook
from pytest_orch_recovery.runtime.host import DEFAULT_ENV_ALLOW, allowed_env


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    create_repo_with_origin(root / "project")
    return root


def _parse(repo: Path, text: str):  # type: ignore[no-untyped-def]
    return parse_fleet(text, source=repo / "fleet.toml")


def test_defaults_and_paths_relative_to_the_fleet_file(repo: Path) -> None:
    config = _parse(repo, 'repository = "project/repo"\nagent = "sim"\n')
    assert config.repository == repo / "project" / "repo"
    assert config.state_dir == repo / ".orch-fleet"
    assert config.journal == repo / ".orch-fleet" / "journal.jsonl"
    assert config.worktree_root == repo / ".orch-fleet" / "worktrees"
    assert config.branch_pattern == "{agent}-work" and config.base == "main"
    assert config.tmux_socket == "orch-fleet" and config.max_attempts == 4
    assert config.env_allow == DEFAULT_ENV_ALLOW and config.on_escalate == ()
    assert config.agent_config().skip_permissions
    assert config.max_live_agents is None  # no cap unless asked
    capped = _parse(
        repo,
        'repository = "project/repo"\nagent = "sim"\nmax_live_agents = 8\n'
        "[policy]\nbackoff_base = 0.5\n",
    )
    assert capped.max_live_agents == 8 and capped.policy.backoff_base == 0.5
    assert config.agent_nice == 10  # agents below the supervisor unless asked
    # The supervisor above them where permitted; a refusal of the default is not a warning.
    assert (config.supervisor_nice, config.supervisor_nice_set) == (10, False)
    zero = _parse(repo, 'repository = "project/repo"\nagent = "sim"\nsupervisor_nice = 0\n')
    assert (zero.supervisor_nice, zero.supervisor_nice_set) == (0, True)
    assert (
        _parse(repo, 'repository = "project/repo"\nagent = "sim"\nagent_nice = 10\n').agent_nice
        == 10
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'repository = "project/repo"\nagent = "sim"\n[env]\nA = "x\\u0000y"\n',
            "fleet.toml:4: env.A:",
        ),
        (
            'repository = "project/repo"\nagent = "sim"\nintake_interval = 1e9\n',
            "fleet.toml:3: intake_interval:",
        ),
        (
            'repository = "project/repo"\nagent = "sim"\ntmux_socket = "a b"\n',
            "fleet.toml:3: tmux_socket:",
        ),
        (
            'repository = "project/repo"\nagent = "sim"\nmax_attempts = 0\n',
            "fleet.toml:3: max_attempts:",
        ),
        (
            'repository = "project/repo"\nagent = "sim"\nmax_live_agents = 0\n',
            "fleet.toml:3: max_live_agents:",
        ),
        (
            'repository = "project/repo"\nagent = "sim"\nagent_nice = 20\n',
            "fleet.toml:3: agent_nice:",
        ),
        (
            'repository = "project/repo"\nagent = "sim"\nagent_nice = -1\n',
            "fleet.toml:3: agent_nice:",
        ),
        (
            'repository = "project/repo"\nagent = "sim"\n[policy]\nbackoff_cap = inf\n',
            "fleet.toml:4: policy.backoff_cap:",
        ),
        (
            'repository = "project/repo"\nagent = "sim"\nstall_window = 0\n',
            "fleet.toml:3: stall_window:",
        ),
        (
            'repository = "project/repo"\nagent = "sim"\nfallback_agents = "codex"\n',
            "fleet.toml:3: fallback_agents: must be a list",
        ),
        (
            'repository = "project/repo"\nagent = "sim"\nfallback_agents = ["nope"]\n',
            "fleet.toml:3: fallback_agents: 'nope': unknown agent",
        ),
        (
            'repository = "project/repo"\nagent = "sim"\nfallback_agents = ["sim"]\n',
            "fleet.toml:3: fallback_agents: each agent once, and not the primary agent",
        ),
        (
            'repository = "project/repo"\nagent = "sim"\n[policy]\nusage_limit_horizon = -5\n',
            "fleet.toml:4: policy.usage_limit_horizon:",
        ),
        ('agent = "sim"\n', "fleet.toml:1: missing required key 'repository'"),
        ("repository = [\n", "fleet.toml:1: invalid TOML"),
    ],
)
def test_a_bad_fleet_file_is_one_line_naming_where(repo: Path, text: str, expected: str) -> None:
    with pytest.raises(FleetConfigError) as info:
        _parse(repo, text)
    message = str(info.value).removeprefix(f"{repo}/")
    assert message.startswith(expected), message
    assert "\n" not in message


def test_task_files_use_the_scenario_task_schema() -> None:
    text = (
        '[[tasks]]\nid = "a"\ntitle = "A"\ndeliverables = ["a.md"]\nagent = "agent-a"\n'
        '[[tasks]]\nid = "b"\ntitle = "B"\ndeliverables = ["b.md"]\ntests = "true"\n'
        "pr = false\n"
    )
    got = parse_tasks(text, source="t.toml")
    assert [(s.task.task_id, s.agent, s.task.wants_pr) for s in got] == [
        ("a", "agent-a", True),
        ("b", None, False),
    ]
    with pytest.raises(TaskFileError, match=r"^t.toml:7: tasks\[2\].id: task id 'a' repeats"):
        parse_tasks(text.replace('id = "b"', 'id = "a"'), source="t.toml")
    with pytest.raises(TaskFileError, match=r"^t.toml:2: expect: unknown key"):
        parse_tasks('id = "a"\nexpect = {}\ntitle = "A"\ndeliverables = ["a"]\n', source="t.toml")
    with pytest.raises(TaskFileError, match=r"deliverables\[1\]"):
        parse_tasks('id = "a"\ntitle = "A"\ndeliverables = ["../etc/passwd"]\n', source="t.toml")


def test_spool_keeps_arrival_order_and_sets_garbage_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for task in parse_tasks(
        '[[tasks]]\nid = "z"\ntitle = "Z"\ndeliverables = ["z"]\n'
        '[[tasks]]\nid = "a"\ntitle = "A"\ndeliverables = ["a"]\n',
        source="t.toml",
    ):
        spool.submit(task)
    spool.release("z", "fixed it")
    (tmp_path / "spool" / "0-garbage.json").write_text("{not json")
    requests = list(spool.pending())
    assert [(r.kind, r.data.get("task_id") or r.data["task"]["task_id"]) for r in requests] == [
        ("submit", "z"),
        ("submit", "a"),
        ("release", "z"),
    ]
    assert (tmp_path / "spool" / "done" / "0-garbage.json.rejected").exists()
    for request in requests:
        spool.finish(request.path)
    assert list(spool.pending()) == []
    assert len(list((tmp_path / "spool" / "done").glob("*.json"))) == 3


_HOOK = "python -m pytest_orch_recovery checkpoint"
_settings = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    user=st.dictionaries(
        st.sampled_from(["permissions", "env", "model", "x"]), _settings, max_size=4
    ),
    other_hooks=st.lists(st.text(min_size=1, max_size=8), max_size=3),
)
def test_merging_the_hook_keeps_every_user_setting(
    user: dict[str, object], other_hooks: list[str]
) -> None:
    entries = [
        {"matcher": "Bash", "hooks": [{"type": "command", "command": c}]} for c in other_hooks
    ]
    settings = {**user, "hooks": {"PostToolUse": entries, "Stop": [{"hooks": []}]}}
    once = merge_hook(settings, matcher="Write", command=_HOOK + " a", timeout=5)
    twice = merge_hook(once, matcher="Write", command=_HOOK + " b", timeout=5)
    for key, value in user.items():
        assert twice[key] == value
    assert twice["hooks"]["Stop"] == [{"hooks": []}]
    commands = [h["command"] for e in twice["hooks"]["PostToolUse"] for h in e["hooks"]]
    assert commands == [*other_hooks, _HOOK + " b"]
    json.dumps(twice)


def test_env_allow_passes_credentials_and_never_tmux() -> None:
    source = {
        "HOME": "/h",
        "GH_TOKEN": "t",
        "GITHUB_TOKEN": "g",
        "SSH_AUTH_SOCK": "/s",
        "CLAUDE_CONFIG_DIR": "/c",
        "AWS_SECRET": "no",
        "TMUX": "/tmp/x",
        "TMUX_PANE": "%1",
    }
    got = allowed_env(source, DEFAULT_ENV_ALLOW)
    assert got == {
        "HOME": "/h",
        "GH_TOKEN": "t",
        "GITHUB_TOKEN": "g",
        "SSH_AUTH_SOCK": "/s",
        "CLAUDE_CONFIG_DIR": "/c",
    }


def test_read_for_its_settings_elsewhere_the_repository_and_cli_need_not_exist(
    tmp_path: Path,
) -> None:
    """``pytest --orch-fleet`` on a CI runner: production's checkout and agent CLI are not
    there; every key is still checked, the required one too."""
    text = (
        'repository = "/srv/absent/project"\nagent = "claude-code"\nstall_window = 90\n'
        "[policy]\nbreaker_threshold = 2\n"
    )
    source = tmp_path / "fleet.toml"
    with pytest.raises(FleetConfigError, match="is not a git repository"):
        parse_fleet(text, source=source)
    config = parse_fleet(text, source=source, here=False)
    assert config.stall_window == 90 and config.policy.breaker_threshold == 2
    assert config.agent == "claude-code"
    with pytest.raises(FleetConfigError, match=r"fleet\.toml:1: missing required key"):
        parse_fleet('agent = "sim"\n', source=source, here=False)
    with pytest.raises(FleetConfigError, match=r"fleet\.toml:2: agent: unknown agent"):
        parse_fleet('repository = "x"\nagent = "nope"\n', source=source, here=False)


def test_fallback_agents_are_the_coordinators_chain(repo: Path) -> None:
    template = "codex exec --full-auto {prompt}"
    config = _parse(
        repo,
        'repository = "project/repo"\nagent = "sim"\n'
        f'fallback_agents = ["{template}", "aider --message-file {{prompt_file}}"]\n'
        "[policy]\nusage_limit_horizon = 3600\n",
    )
    assert config.fallback_agents == (template, "aider --message-file {prompt_file}")
    assert config.policy.policy().usage_limit_horizon == 3600.0
    assert config.fallback_driver("sim", AgentConfig()) is None  # the primary's own driver
    driver = config.fallback_driver(template, AgentConfig())
    assert driver is not None and driver.name == "template"
