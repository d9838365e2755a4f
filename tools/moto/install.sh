#!/usr/bin/env bash
# Installs what kerf-aws's tests run, from PyPI only, into a virtualenv of its own under
# ~/.cache/kerf/aws-tools/ (or $KERF_AWS_TOOLS), once:
#
#   moto[server]  the AWS API emulator tools/moto/server.py starts and seeds
#                 (server.py reaches into moto's backends and its IAM checks, so the
#                 version is pinned);
#   cfn-lint      AWS's linter for CloudFormation, run on deploy/aws/.
#
# Prints one line, `python=<path>` (the virtualenv's interpreter), and nothing else on
# stdout; progress goes to stderr. Safe to run concurrently (flock on the cache).
set -euo pipefail

MOTO_VERSION="5.2.1"
CFN_LINT_VERSION="1.58.0"

root="${KERF_AWS_TOOLS:-$HOME/.cache/kerf/aws-tools}"
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9

venv="$root/moto-$MOTO_VERSION-cfn-lint-$CFN_LINT_VERSION"
python="$venv/bin/python3"
if [ ! -f "$venv/.complete" ]; then
  echo "aws tools: installing moto[server]==$MOTO_VERSION and cfn-lint==$CFN_LINT_VERSION from PyPI" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" "cfn-lint==$CFN_LINT_VERSION" >&2
  touch "$venv/.complete"
fi
echo "python=$python"
