-- An agent's name is its tmux session, its worktree and its branch ("{agent}-work") on the
-- origin every host pushes to: unique across the fleet, not only within one host's
-- coordinator. The store names an agent when its task is submitted without one.
CREATE UNIQUE INDEX orch_tasks_agent ON orch_tasks (agent) WHERE agent IS NOT NULL;
