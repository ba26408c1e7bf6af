"""Repository-level pytest configuration: pytester for end-to-end plugin tests.

The Hypothesis profile of the suite is in ``tests/conftest.py``: the main job
(``pytest --orch-chaos``) collects no tests, and importing Hypothesis there would cost every
pytest process (xdist workers too) its import and assertion rewriting.
"""

from __future__ import annotations

pytest_plugins = ["pytester"]
