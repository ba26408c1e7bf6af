"""One module per ``orch-recovery`` subcommand (see ``cli.py``)."""
