"""The production layer: a long-lived supervisor running the engine on an operator's own
repository (``orch-recovery supervise``) and its task intake."""
