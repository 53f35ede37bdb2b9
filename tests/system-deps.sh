#!/usr/bin/env bash
# The machine packages the tests use: PostgreSQL (a real server), Debian's Chromium (browser
# tests), cloud-init (its schema validates our cloud-config), npm (it installs the real
# OpenClaw gateway for the sandbox) and Caddy (the front of the production layout). Installs
# what is missing.
set -euo pipefail
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
command -v npm >/dev/null || missing+=(npm)  # installs Node 24 and OpenClaw for the sandbox
command -v caddy >/dev/null || missing+=(caddy)  # the control plane's front (deploy/front.Caddyfile)
/usr/bin/python3 -c 'import cloudinit.config.schema' 2>/dev/null || missing+=(cloud-init)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing system packages: ${missing[*]}. Install them (sudo apt-get install -y ${missing[*]}) and run again." >&2
  exit 1
fi
echo "Installing ${missing[*]} from Debian's packages..."
export DEBIAN_FRONTEND=noninteractive
for attempt in 1 2 3; do
  if apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    exit 0
  fi
  echo "apt-get failed (attempt $attempt); retrying in 10s" >&2
  sleep 10
done
echo "Could not install ${missing[*]}." >&2
exit 1
