#!/usr/bin/env bash
# The CI loop of ci_smoke.sh in one command: a free port, the server, a wait until it answers,
# the tests, a teardown of everything it started, and the proof that its port is free.
set -euo pipefail

# {port} is the leased port; the test command gets URL (and SERVER_URL, SERVER_PORT, PORT).
# Exit status: the tests' own; 121 if the server died, 124 if it never became ready, 122 if
# anything it started outlived the teardown. --json writes the whole story for the CI logs.
portinspect run --json \
    --server "python3 -m http.server {port} --bind 127.0.0.1 --directory ${SITE_DIR:-.}" \
    --http / --near "${PREFERRED_PORT:-8000}" \
    -- sh -c 'curl --fail --silent --show-error "$URL/" >/dev/null && echo "served on $PORT"' \
    >run-report.json
echo "tests passed, server stopped, port free"
