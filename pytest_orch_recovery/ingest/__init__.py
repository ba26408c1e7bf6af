"""Importers for outside orchestrators' formats: their results files, logs and worktrees."""
