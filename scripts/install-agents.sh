#!/usr/bin/env bash
# Install the agent CLIs the tests run in bottles (Claude Code, Codex, Gemini CLI) into
# .tools/agents, exactly as tests/agents/package-lock.json locks them. Needs node and npm
# (Debian's are installed when missing). Idempotent: npm runs only when the lock changed.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$repo/tests/agents" dest="$repo/.tools/agents"
if ! command -v npm >/dev/null; then
  "$repo/scripts/install-system.sh" nodejs npm
fi
stamp="$dest/node_modules/.bbnet-installed"
if [ -f "$stamp" ] && cmp -s "$stamp" "$src/package-lock.json"; then exit 0; fi
echo "install-agents: installing the agent CLIs locked in $src/package-lock.json" >&2
mkdir -p "$dest"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
# install scripts stay off: the CLIs' native builds come as registry packages, nothing is fetched
(cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
# Claude Code's bin is a placeholder until its postinstall links the native binary from its
# platform package (already installed as a registry package): run just that one, offline
node "$dest/node_modules/@anthropic-ai/claude-code/install.cjs"
cp "$src/package-lock.json" "$stamp"
