#!/usr/bin/env bash
# A CI job with nothing but portinspect (and curl):
#   find a port -> start the server -> wait until it listens -> test -> stop it -> make sure it is free.
set -euo pipefail

PORT=$(portinspect free --near "${PREFERRED_PORT:-8000}")
echo "using port $PORT"

python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "${SITE_DIR:-.}" >/dev/null 2>&1 &

# Exit 124 if nothing accepts on 127.0.0.1 within 30 s (the socket table is read: the
# address counts, so a server on ::1 only would not do for the curl below), then a GET
# that must answer below 500. A service in another container: `portinspect wait db:5432`.
portinspect wait "http://127.0.0.1:$PORT/" --timeout 30

curl --fail --silent --show-error "http://127.0.0.1:$PORT/" >/dev/null

# --yes: never prompt (CI has no terminal anyway). Exit 5 if anything still holds the port.
portinspect kill "$PORT" --yes --quiet
portinspect wait "$PORT" --free --timeout 10
echo "served on $PORT, stopped, port free"
