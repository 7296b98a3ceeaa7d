#!/usr/bin/env bash
# Installs what Warden needs on a fresh Debian 12 machine with Node 20: PostgreSQL 15, etcd, pgBackRest, the
# tools the tests use (iproute2, nftables, util-linux's setpriv), then the npm packages and the build.
# As root it runs apt-get itself; otherwise it prints the exact command to run.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[[ -x /usr/lib/postgresql/15/bin/postgres ]] || need+=(postgresql-15)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v pgbench >/dev/null 2>&1 || need+=(postgresql-contrib)
# pgBackRest (Debian 12: 2.45): the WAL archive, backups and restores of `warden up` and its tests.
command -v pgbackrest >/dev/null 2>&1 || need+=(pgbackrest)
# HAProxy: `warden haproxy-config` is tested against Debian's, and bench/router.ts compares with it.
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# openssl: the REST API TLS tests make their own CA and certificates.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
{ [[ -x /usr/sbin/nft ]] || command -v nft >/dev/null 2>&1; } || need+=(nftables)
if ((${#need[@]} > 0)); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "installing from Debian: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "missing: ${need[*]}" >&2
    echo "run: sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi
# Debian starts a packaged cluster on 5432 after install; Warden never uses it, so it is left alone.

node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 20)); then
  echo "Node 20 or newer is needed (found $(node --version))" >&2
  exit 1
fi
if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build
