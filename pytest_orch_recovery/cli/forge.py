"""``orch-recovery forge --root DIR --origin REPO``: the ``gh`` stand-in, for a fleet without
GitHub.

Creates (or reopens) a forge at ``DIR`` -- pull requests kept in files over the bare
repository ``REPO`` the agents push to, answering ``gh pr create/view/list`` and ``gh auth
status`` with the real ``gh``'s wording -- writes its ``gh`` program into ``--bin`` (default
``DIR/bin``) and prints the one shell line that puts it first on PATH::

    eval "$(orch-recovery forge --root forge --origin origin.git)"

``--inject KIND`` makes the next ``--times`` calls of ``gh <--command>`` fail as GitHub fails
(``unreachable`` is GitHub down). Exit 2 on a usage error.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from pytest_orch_recovery.cli.fleet_output import fail
from pytest_orch_recovery.doubles.forge import (
    COMMANDS,
    DEFAULT_OWNER_REPO,
    FAULT_KINDS,
    Forge,
    ForgeError,
    install_gh_shim,
)
from pytest_orch_recovery.infra.argtypes import positive_int

PROG = "orch-recovery forge"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Create (or reopen) a local GitHub stand-in and print the PATH line for "
        "its gh. Pull requests are kept under --root; pushes go to the bare --origin.",
    )
    parser.add_argument("--root", required=True, type=Path, metavar="DIR", help="forge files")
    parser.add_argument(
        "--origin",
        type=Path,
        metavar="REPO",
        help="the bare repository the agents push to (required to create a forge)",
    )
    parser.add_argument(
        "--bin",
        type=Path,
        metavar="DIR",
        help="where to write the gh program (default: DIR/bin under --root)",
    )
    parser.add_argument(
        "--owner-repo",
        default=DEFAULT_OWNER_REPO,
        metavar="OWNER/REPO",
        help="the repository's name in PR URLs (default: %(default)s)",
    )
    parser.add_argument(
        "--inject",
        choices=FAULT_KINDS,
        metavar="KIND",
        help="make the next --times calls fail: " + ", ".join(FAULT_KINDS),
    )
    parser.add_argument(
        "--times",
        type=positive_int,
        default=1,
        metavar="N",
        help="how many calls --inject fails (default: %(default)s)",
    )
    parser.add_argument(
        "--command",
        choices=COMMANDS,
        default="pr create",
        metavar="COMMAND",
        help="the gh command --inject hits: " + ", ".join(COMMANDS) + " (default: %(default)s)",
    )
    return parser


def _is_bare_repository(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir()


def run(args: argparse.Namespace) -> int:
    root: Path = args.root
    try:
        if args.origin is not None:
            if not _is_bare_repository(args.origin):
                return fail(PROG, f"--origin: {args.origin} is not a bare git repository")
            forge = Forge(root, origin=args.origin, owner_repo=args.owner_repo)
        else:
            forge = Forge.open(root)
        if args.inject is not None:
            forge.inject(args.inject, command=args.command, times=args.times)
            print(f"gh {args.command}: the next {args.times} call(s) fail with {args.inject}")
            return 0
        bin_dir = (args.bin or forge.root / "bin").resolve()
        if ":" in str(bin_dir):
            return fail(PROG, f"--bin: {bin_dir}: a PATH entry cannot hold ':'")
        gh = install_gh_shim(bin_dir, forge.root)
    except (ForgeError, ValueError) as exc:
        return fail(PROG, str(exc))
    print(f'export PATH={shlex.quote(str(gh.parent))}:"$PATH"')
    return 0
