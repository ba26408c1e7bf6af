-- Operators' requests for the host that holds a task (a release): `orch-recovery release`
-- runs on any machine with the fleet file, and the holder's supervisor takes the request at
-- its next pass. A request is carried out, then marked done; carrying out is idempotent, so
-- a supervisor that dies between the two only does it again.
CREATE TABLE orch_requests (
    id          bigserial PRIMARY KEY,
    host        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('release')),
    body        json NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    done_at     timestamptz
);
CREATE INDEX orch_requests_waiting ON orch_requests (host, id) WHERE done_at IS NULL;
