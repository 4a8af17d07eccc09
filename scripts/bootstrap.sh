#!/usr/bin/env bash
# Idempotent set-up: installs the Debian packages pfxha runs against (ZooKeeper,
# CFSSL, PostgreSQL for the CAs' certdbs, Prometheus + promtool, openssl,
# systemd-analyze, python3-seccomp) when they are missing, then creates or
# refreshes the virtual environment in .venv. Safe to run any number of times;
# it does nothing when everything is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
[ -f /usr/share/java/zookeeper.jar ] || need_pkgs+=(zookeeper)
command -v java >/dev/null 2>&1 || need_pkgs+=(default-jre-headless)
command -v cfssl >/dev/null 2>&1 || need_pkgs+=(golang-cfssl)
command -v prometheus >/dev/null 2>&1 || need_pkgs+=(prometheus)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need_pkgs+=(postgresql)
command -v setpriv >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
command -v iptables >/dev/null 2>&1 || need_pkgs+=(iptables)
# The systemd unit's checks: systemd-analyze verify / syscall-filter (nothing is
# started: the package only provides the tools here), and libseccomp's bindings
# for the system python3, which scripts/unit_seccomp.py uses to run the
# connector under the unit's system-call filter.
command -v systemd-analyze >/dev/null 2>&1 || need_pkgs+=(systemd)
/usr/bin/python3 -c 'import seccomp' >/dev/null 2>&1 || need_pkgs+=(python3-seccomp)

if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${need_pkgs[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
fi

# Debian's prometheus package starts a system service on install; pfxha starts
# its own instances on free ports, so the packaged one is not needed.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || true
fi
# Likewise Debian's postgresql package creates and starts a cluster ("main" on
# 5432); the lab runs its own servers (chaos/launch/postgres.py), never that one.
if [ ${#need_pkgs[@]} -gt 0 ] && [[ " ${need_pkgs[*]} " == *" postgresql "* ]]; then
    if command -v systemctl >/dev/null 2>&1; then
        systemctl stop postgresql >/dev/null 2>&1 || true
        systemctl disable postgresql >/dev/null 2>&1 || true
    fi
    if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters -h 2>/dev/null | while read -r ver name _port status _rest; do
            if [ "$status" = "online" ]; then pg_ctlcluster "$ver" "$name" stop || true; fi
            echo manual > "/etc/postgresql/$ver/$name/start.conf" 2>/dev/null || true
        done
    fi
fi

PY="${PYTHON:-python3}"
stamp=".venv/.pfxha-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: installing pfxha and its dev tools into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
fi
echo "bootstrap: ready ($(.venv/bin/pfxha --version 2>/dev/null || echo 'pfxha not importable'))"
