#!/usr/bin/env bash
# Regenerates the man pages (agent/dist/man: tandem(8), tandem-SUB(8),
# tandem.toml(5) from docs/config.md) and the shell completions
# (agent/dist/completions: bash, zsh, fish) from the clap definitions.
# agent/tests/generated_docs.rs fails when the checked-in files are not
# what this writes.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run -q --locked -p tandem --example gen-docs
