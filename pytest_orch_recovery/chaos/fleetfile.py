"""A production fleet file's settings, applied to the campaign's scenarios (``--orch-fleet``).

The campaign then proves the engine under the configuration production runs: the fleet
file's agent, ``skip_permissions``, ``[policy]``, attempt budget (``max_attempts``),
``max_live_agents``, ``attempt_timeout``, ``stall_window``, ``env_allow`` and ``[env]``. Only
settings cross over: each scenario still runs in its own sandbox (repository, bare origin,
worktrees, isolated HOME, private tmux server), so the fleet file's ``repository``,
``state_dir``, ``tmux_socket`` and the other places are checked and left unused.

A scenario that pins a setting itself (its own ``[policy]`` key, ``max_attempts``,
``max_live_agents``, ``attempt_timeout`` or ``stall_window``) keeps it: the scenario was
written around that value (a budget of exactly four attempts, a hang waited out in 15 s).
Every such case is a :class:`PinnedSetting`, printed by the gate and listed in the reports,
so nobody reads the figures as the fleet file's where they are not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_orch_recovery.chaos.scenario import Scenario
from pytest_orch_recovery.engine.policy import POLICY_SETTING_KEYS, PolicySettings
from pytest_orch_recovery.fleet.config import FleetConfig, load_fleet
from pytest_orch_recovery.runtime.host import DEFAULT_ENV_ALLOW

# Scenario keys that may pin what the fleet file sets, as the fleet file names them.
_PINNABLE = ("max_attempts", "max_live_agents", "attempt_timeout", "stall_window")


@dataclass(frozen=True)
class PinnedSetting:
    """One setting a scenario pins over the fleet file's value."""

    scenario: str
    key: str  # as the fleet file names it: ``policy.breaker_threshold``, ``attempt_timeout``
    fleet: Any  # the fleet file's value (None: unset there, the engine's default)
    pinned: Any  # the scenario's

    def describe(self) -> str:
        """One line for the gate's summary and the reports.

        >>> PinnedSetting("timeout", "attempt_timeout", 1800.0, 15.0).describe()
        'timeout: attempt_timeout = 15 (the scenario pins it; fleet file: 1800)'
        """
        return (
            f"{self.scenario}: {self.key} = {_shown(self.pinned)} "
            f"(the scenario pins it; fleet file: {_shown(self.fleet)})"
        )

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "text": self.describe()}


def effective_policy(settings: PolicySettings) -> dict[str, float]:
    """``settings``' four numbers as the engine uses them (its defaults where unset).

    >>> effective_policy(PolicySettings(breaker_threshold=1))["breaker_threshold"]
    1
    """
    policy = settings.policy()
    numbers = {
        "backoff_base": policy.backoff.base,
        "backoff_cap": policy.backoff.cap,
        "breaker_threshold": policy.breaker.threshold,
        "breaker_window": policy.breaker.window,
        "usage_limit_horizon": policy.usage_limit_horizon,
    }
    return {key: numbers[key] for key in sorted(POLICY_SETTING_KEYS)}


def _shown(value: Any) -> str:
    if value is None:
        return "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class ProductionSettings:
    """What of a fleet file a scenario runs under (see the module doc)."""

    source: str
    agent: str
    skip_permissions: bool = True
    max_attempts: int = 4
    attempt_timeout: float = 1800.0
    stall_window: float | None = None
    max_live_agents: int | None = None
    policy: PolicySettings = field(default_factory=PolicySettings)
    env_allow: tuple[str, ...] = DEFAULT_ENV_ALLOW
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: FleetConfig) -> ProductionSettings:
        return cls(
            source=str(config.source),
            agent=config.agent,
            skip_permissions=config.skip_permissions,
            max_attempts=config.max_attempts,
            attempt_timeout=config.attempt_timeout,
            stall_window=config.stall_window,
            max_live_agents=config.max_live_agents,
            policy=config.policy,
            env_allow=tuple(config.env_allow),
            env=dict(config.env),
        )

    def applied_to(self, scenario: Scenario) -> Scenario:
        """``scenario`` with the fleet file's settings wherever it pins none of its own."""
        policy = PolicySettings(
            **{
                key: getattr(scenario.policy, key)
                if getattr(scenario.policy, key) is not None
                else getattr(self.policy, key)
                for key in sorted(POLICY_SETTING_KEYS)
            }
        )
        pinned = {key: getattr(scenario, key) for key in _PINNABLE}
        return dataclasses.replace(
            scenario,
            policy=policy,
            **{k: v if v is not None else getattr(self, k) for k, v in pinned.items()},
        )

    def policy_numbers(self) -> dict[str, float]:
        """The ``[policy]`` numbers in effect: the fleet file's, the engine's defaults for
        the keys it leaves out."""
        return effective_policy(self.policy)

    def overrides(self, scenario: Scenario) -> list[PinnedSetting]:
        """Every setting ``scenario`` pins to another value than the fleet file's."""
        numbers = self.policy_numbers()
        out = [
            PinnedSetting(scenario.name, f"policy.{key}", numbers[key], mine)
            for key in sorted(POLICY_SETTING_KEYS)
            if (mine := getattr(scenario.policy, key)) is not None and mine != numbers[key]
        ]
        out += [
            PinnedSetting(scenario.name, key, getattr(self, key), mine)
            for key in _PINNABLE
            if (mine := getattr(scenario, key)) is not None and mine != getattr(self, key)
        ]
        return out

    def describe(self) -> str:
        """One line for the session header: the settings the campaign runs under."""
        policy = ", ".join(f"{key} {_shown(v)}" for key, v in self.policy_numbers().items())
        return (
            f"agent {self.agent}, skip_permissions {str(self.skip_permissions).lower()}, "
            f"max_attempts {self.max_attempts}, max_live_agents "
            f"{_shown(self.max_live_agents)}, attempt_timeout {_shown(self.attempt_timeout)}, "
            f"stall_window {_shown(self.stall_window)}, policy: {policy}"
        )

    def to_json(self) -> dict[str, Any]:
        """The settings for the reports. ``[env]`` values are left out: they may be secrets
        (tokens are what a fleet file's ``[env]`` is for); their names say what was set."""
        return {
            "source": self.source,
            "agent": self.agent,
            "skip_permissions": self.skip_permissions,
            "max_attempts": self.max_attempts,
            "attempt_timeout": self.attempt_timeout,
            "stall_window": self.stall_window,
            "max_live_agents": self.max_live_agents,
            "policy": self.policy_numbers(),
            "env_allow": list(self.env_allow),
            "env": sorted(self.env),
            "summary": self.describe(),
        }


def load_fleet_settings(path: str) -> ProductionSettings:
    """The settings of the fleet file at ``path``, checked as ``orch-recovery supervise``
    checks the file (a :class:`~pytest_orch_recovery.fleet.config.FleetConfigError` with
    ``file:line: key: message``), except that its repository need not exist here."""
    return ProductionSettings.from_config(load_fleet(path, here=False))
