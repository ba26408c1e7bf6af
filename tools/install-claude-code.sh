#!/usr/bin/env bash
# Install the pinned Claude Code CLI into <repo>/.tools/claude-code (git-ignored).
#
#   tools/install-claude-code.sh            # install (a fast no-op when already present)
#   CLAUDE_CODE_VERSION=2.1.332 tools/...   # another version, e.g. to re-run the conformance
#   tools/install-claude-code.sh --print-package   # the platform package it would install
#
# What it does, and why:
# - `npm install --ignore-scripts`: the package's postinstall (install.cjs) only copies the native
#   binary into place; we do that ourselves, so no install script of a third party runs here.
# - the working binary is the native executable `claude` in the platform package
#   (@anthropic-ai/claude-code-linux-x64 and friends, an optionalDependency); the main package's
#   bin/claude.exe is a placeholder that install.cjs would overwrite. We link the native one to
#   .tools/claude-code/bin/claude, where agents.find_claude_code() looks.
# - the main package declares engines.node >= 22; npm only warns on Node 20, and the native
#   binary needs no Node at all.
# Exits non-zero with the reason on stderr when it cannot install (no npm, registry unreachable,
# no platform package for this machine, the binary does not run).
set -euo pipefail

PINNED_VERSION="2.1.328"
VERSION="${CLAUDE_CODE_VERSION:-$PINNED_VERSION}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX="$ROOT/.tools/claude-code"
LINK="$PREFIX/bin/claude"

die() {
    echo "install-claude-code: $*" >&2
    exit 1
}

platform_package() {
    # The npm package holding the native binary for this machine.
    local platform libc_banner
    case "$(uname -s)-$(uname -m)" in
        Linux-x86_64) platform="linux-x64" ;;
        Linux-aarch64 | Linux-arm64) platform="linux-arm64" ;;
        Darwin-x86_64) platform="darwin-x64" ;;
        Darwin-arm64) platform="darwin-arm64" ;;
        *) die "no Claude Code platform package for $(uname -s) $(uname -m)" ;;
    esac
    # The banner is read whole before it is matched: with pipefail, "ldd --version | grep -q"
    # fails whenever grep quits at its match before ldd has written the rest (ldd dies of
    # SIGPIPE); that race picked the musl build on a glibc machine in ~7% of runs.
    if [ "$(uname -s)" = Linux ]; then
        libc_banner="$(ldd --version 2>&1 || true)"
        libc_banner="${libc_banner,,}"
        if [[ $libc_banner != *glibc* && $libc_banner != *"gnu libc"* ]]; then
            platform="$platform-musl"
        fi
    fi
    echo "@anthropic-ai/claude-code-$platform"
}

if [ "${1:-}" = "--print-package" ]; then  # which platform package it would install, and exit
    platform_package
    exit 0
fi

installed_version() {
    # `claude --version` prints e.g. "2.1.328 (Claude Code)". An isolated HOME keeps the
    # check from creating ~/.claude or reading the user's settings.
    local home
    home="$(mktemp -d)"
    HOME="$home" CLAUDE_CONFIG_DIR="$home/.claude" DISABLE_AUTOUPDATER=1 \
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
        timeout 60 "$LINK" --version 2>/dev/null | awk 'NR == 1 { print $1 }' || true
    rm -rf "$home"
}

if [ -x "$LINK" ] && [ "$(installed_version)" = "$VERSION" ]; then
    echo "install-claude-code: Claude Code $VERSION already installed at $LINK"
    exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm is not on PATH: install Node.js (>= 20) and npm"

package="$(platform_package)"

echo "install-claude-code: installing @anthropic-ai/claude-code@$VERSION ($package) into $PREFIX"
mkdir -p "$PREFIX"
log="$PREFIX/npm-install.log"
if ! npm install --ignore-scripts --no-audit --no-fund --no-save --loglevel=error \
        --prefix "$PREFIX" "@anthropic-ai/claude-code@$VERSION" >"$log" 2>&1; then
    if grep -qE "ENOTFOUND|ECONNREFUSED|ETIMEDOUT|EAI_AGAIN|ECONNRESET|network" "$log"; then
        die "the npm registry ($(npm config get registry)) is unreachable; npm said: $(tail -3 "$log" | tr '\n' ' ')"
    fi
    if grep -q "ETARGET\|E404" "$log"; then
        die "the registry has no @anthropic-ai/claude-code@$VERSION; npm said: $(tail -3 "$log" | tr '\n' ' ')"
    fi
    die "npm install failed (log: $log): $(tail -5 "$log" | tr '\n' ' ')"
fi

native="$PREFIX/node_modules/$package/claude"
[ -f "$native" ] || die "npm installed no native binary at $native (optional dependency $package skipped?)"
chmod +x "$native"
mkdir -p "$PREFIX/bin"
ln -sfn "$native" "$LINK"

got="$(installed_version)"
[ "$got" = "$VERSION" ] || die "$LINK --version reports '${got:-nothing}', expected $VERSION"
echo "install-claude-code: Claude Code $got installed at $LINK"
