-- Version 1 of the fleet store: hosts, the task queue with leases, the event log, launches.
-- Applied by `orch-recovery store init|migrate` in one transaction with its version row.
-- The rules that keep one live attempt per task across hosts are enforced here, by the
-- database, in the transaction that writes: a client cannot forget them.

CREATE TABLE orch_hosts (
    name            text PRIMARY KEY CHECK (name <> '' AND length(name) <= 200),
    capacity        integer CHECK (capacity IS NULL OR capacity >= 0),  -- NULL: no limit
    state           text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'retired')),
    registered_at   timestamptz NOT NULL DEFAULT now(),
    last_heartbeat  timestamptz NOT NULL DEFAULT now()
);

-- The queue. A task is 'queued' until a host claims it ('claimed': host, epoch, lease_until),
-- and 'done' once its outcome is final. Each claim raises the epoch; a lease that ran out
-- makes the task claimable again, by any host, at a higher epoch.
CREATE TABLE orch_tasks (
    task_id       text PRIMARY KEY CHECK (task_id <> ''),
    position      bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- submission order
    task          json NOT NULL,  -- Task JSON (json keeps \u0000, jsonb refuses it)
    agent         text,
    state         text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'claimed', 'done')),
    host          text REFERENCES orch_hosts (name),
    epoch         bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    lease_until   timestamptz,
    claim_id      uuid,  -- the claim that took it: a retried claim finds its tasks
    submitted_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'claimed') = (host IS NOT NULL AND lease_until IS NOT NULL) OR state = 'done')
);
CREATE INDEX orch_tasks_claimable ON orch_tasks (position) WHERE state <> 'done';
CREATE INDEX orch_tasks_by_host ON orch_tasks (host) WHERE state = 'claimed';

-- One row: the last event seq handed out. Taken in the appending transaction, so seqs are
-- gap-free and in commit order (a refused or rolled-back append takes none).
CREATE TABLE orch_event_counter (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_seq  bigint NOT NULL
);
INSERT INTO orch_event_counter VALUES (true, 0);

-- The journal: the same events as journal.jsonl, with the writer's host and lease epoch.
-- `body` is the event's JSON text as the JSONL journal writes it, seq aside (json, not jsonb:
-- jsonb refuses \u0000, which an agent's output tail may hold). `append_id` makes a retried
-- append whose commit was acknowledged into the void a no-op.
CREATE TABLE orch_events (
    seq          bigint PRIMARY KEY,
    append_id    uuid NOT NULL UNIQUE,
    kind         text NOT NULL,
    task_id      text,
    attempt      integer,
    key          text,
    host         text NOT NULL REFERENCES orch_hosts (name),
    epoch        bigint,  -- the writer's lease epoch for task_id; NULL for fleet-wide events
    body         json NOT NULL,
    appended_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orch_events_by_task ON orch_events (task_id, seq) WHERE task_id IS NOT NULL;

-- Exactly one launch per (task, attempt) across hosts, and one per idempotency key.
CREATE TABLE orch_launches (
    task_id      text NOT NULL REFERENCES orch_tasks (task_id),
    attempt      integer NOT NULL CHECK (attempt >= 1),
    key          text NOT NULL UNIQUE,
    host         text NOT NULL REFERENCES orch_hosts (name),
    epoch        bigint NOT NULL,
    seq          bigint NOT NULL REFERENCES orch_events (seq),
    launched_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, attempt)
);

-- Fencing and ordering, before every event insert: an event about a task is accepted only
-- from the host holding the task's lease, at the lease's epoch, before the lease runs out
-- (the database's clock: hosts' clocks are never compared). The task row is locked FOR SHARE
-- so a concurrent reclaim waits for this append to commit, or this append sees the reclaim.
CREATE FUNCTION orch_events_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    holder orch_tasks%ROWTYPE;
BEGIN
    IF NEW.task_id IS NOT NULL THEN
        SELECT * INTO holder FROM orch_tasks WHERE task_id = NEW.task_id FOR SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'OR404',
                MESSAGE = format('task %L is not in the store''s queue', NEW.task_id);
        END IF;
        -- A finished task still takes its last holder's workspace records (cleaning up
        -- after success), and nothing else.
        IF holder.host IS DISTINCT FROM NEW.host OR holder.epoch IS DISTINCT FROM NEW.epoch
                OR holder.state = 'queued'
                OR (holder.state = 'claimed' AND holder.lease_until <= now())
                OR (holder.state = 'done'
                    AND NEW.kind NOT IN ('workspace_cleaned', 'workspace_orphaned')) THEN
            RAISE EXCEPTION USING ERRCODE = 'OR409',
                MESSAGE = format(
                    'stale lease: host %L epoch %s wrote %s for task %L, held by %L epoch %s '
                    '(%s, lease until %s)', NEW.host, NEW.epoch, NEW.kind, NEW.task_id,
                    holder.host, holder.epoch, holder.state, holder.lease_until);
        END IF;
    END IF;
    UPDATE orch_event_counter SET last_seq = last_seq + 1 RETURNING last_seq INTO NEW.seq;
    RETURN NEW;
END $$;
CREATE TRIGGER orch_events_fence BEFORE INSERT ON orch_events
    FOR EACH ROW EXECUTE FUNCTION orch_events_fence();

-- What an event means for the queue, in the same transaction: a launch takes its unique
-- (task, attempt) and key; a final outcome takes the task off the queue.
CREATE FUNCTION orch_events_effects() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'attempt_launched' THEN
        IF NEW.attempt IS NULL OR NEW.key IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'OR422',
                MESSAGE = format('attempt_launched for task %L has no attempt or key', NEW.task_id);
        END IF;
        INSERT INTO orch_launches (task_id, attempt, key, host, epoch, seq)
            VALUES (NEW.task_id, NEW.attempt, NEW.key, NEW.host, NEW.epoch, NEW.seq);
    ELSIF NEW.kind IN ('task_succeeded', 'task_failed') THEN
        UPDATE orch_tasks SET state = 'done', lease_until = NULL WHERE task_id = NEW.task_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER orch_events_effects AFTER INSERT ON orch_events
    FOR EACH ROW EXECUTE FUNCTION orch_events_effects();

-- Events are history: never rewritten.
CREATE FUNCTION orch_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'OR405', MESSAGE = 'orch_events is append-only';
END $$;
CREATE TRIGGER orch_events_append_only BEFORE UPDATE OR DELETE ON orch_events
    FOR EACH ROW EXECUTE FUNCTION orch_events_append_only();
