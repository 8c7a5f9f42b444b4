#!/usr/bin/env bash
# Brings up what splatfleet needs on one machine: RabbitMQ and PostgreSQL on 127.0.0.1 with
# their default ports, the `splatfleet` database, and promtool (Prometheus rule tests).
# Idempotent: it starts what is stopped, installs (Debian packages, as root) what is missing,
# and says what it found and did.
#
# Environment:
#   SPLATFLEET_TEST_PG_USER / SPLATFLEET_TEST_PG_PASSWORD  PostgreSQL login (default postgres, none)
#   SPLATFLEET_DB_NAME                                     database to create (default splatfleet)
set -euo pipefail

PG_USER="${SPLATFLEET_TEST_PG_USER:-postgres}"
DB_NAME="${SPLATFLEET_DB_NAME:-splatfleet}"
export PGPASSWORD="${SPLATFLEET_TEST_PG_PASSWORD:-${PGPASSWORD:-}}"

say() { printf 'dev-up: %s\n' "$*"; }
die() { printf 'dev-up: error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
    local port=$1 what=$2 tries=${3:-60}
    for _ in $(seq "$tries"); do
        port_open "$port" && return 0
        sleep 1
    done
    die "$what did not open 127.0.0.1:$port within ${tries}s"
}

apt_updated=0
install_packages() { # install_packages [apt-get option...] PACKAGE...
    local names=() arg
    for arg in "$@"; do [[ $arg == -* ]] || names+=("$arg"); done
    [ "$(id -u)" -eq 0 ] || die "${names[*]} not installed; run this script as root to install it, or: sudo apt-get install -y $*"
    command -v apt-get >/dev/null || die "${names[*]} not installed and apt-get is not available; install ${names[*]} by hand"
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
        apt_updated=1
    fi
    say "installing ${names[*]} from Debian packages"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install ${names[*]} failed"
}

has_systemd() { [ -d /run/systemd/system ]; }

# --- RabbitMQ ---------------------------------------------------------------------------
if ! command -v rabbitmqctl >/dev/null; then
    install_packages rabbitmq-server
    say "installed RabbitMQ"
else
    say "found RabbitMQ ($(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null || echo 'version unknown'))"
fi
if port_open 5672; then
    say "RabbitMQ is running on 127.0.0.1:5672"
else
    say "starting RabbitMQ"
    if rabbitmqctl -q ping >/dev/null 2>&1; then
        # The node runs but its application was stopped (rabbitmqctl stop_app).
        rabbitmqctl -q start_app || die "rabbitmqctl start_app failed"
    elif has_systemd; then
        systemctl start rabbitmq-server || die "systemctl start rabbitmq-server failed (journalctl -u rabbitmq-server)"
    else
        rabbitmq-server -detached || die "rabbitmq-server -detached failed (see /var/log/rabbitmq)"
    fi
    wait_for_port 5672 RabbitMQ 90
    say "RabbitMQ started"
fi
rabbitmqctl -q await_startup --timeout 60 >/dev/null 2>&1 || die "RabbitMQ did not finish starting (rabbitmqctl status says why)"

# --- promtool -----------------------------------------------------------------------------
# ops/test.sh checks the Prometheus rules, config and metrics with it. It ships in Debian's
# `prometheus` package, whose server this script does not want running: it is stopped and
# disabled right after the install.
if command -v promtool >/dev/null; then
    say "found promtool ($(promtool --version 2>&1 | awk 'NR==1 {print $3}'))"
else
    install_packages --no-install-recommends prometheus
    if has_systemd; then
        systemctl disable --now prometheus >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/prometheus ]; then
        /etc/init.d/prometheus stop >/dev/null 2>&1 || true
        update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
    command -v promtool >/dev/null || die "the prometheus package installed no promtool"
    say "installed promtool (the prometheus server it came with is stopped and disabled)"
fi

# --- PostgreSQL -------------------------------------------------------------------------
installed_pg=0
if ! command -v pg_lsclusters >/dev/null && ! command -v pg_ctl >/dev/null; then
    install_packages postgresql
    installed_pg=1
    say "installed PostgreSQL"
else
    say "found PostgreSQL"
fi
if port_open 5432; then
    say "PostgreSQL is running on 127.0.0.1:5432"
else
    say "starting PostgreSQL"
    if command -v pg_lsclusters >/dev/null; then
        version=$(pg_lsclusters --no-header | awk 'NR==1 {print $1}')
        [ -n "$version" ] || die "PostgreSQL is installed but has no cluster (pg_createcluster <version> main)"
        if has_systemd; then
            systemctl start "postgresql@${version}-main" || die "systemctl start postgresql@${version}-main failed"
        else
            pg_ctlcluster --skip-systemctl-redirect "$version" main start || die "pg_ctlcluster $version main start failed"
        fi
    else
        die "PostgreSQL is installed without Debian's cluster tools; start it by hand"
    fi
    wait_for_port 5432 PostgreSQL 60
    say "PostgreSQL started"
fi

psql_tcp() { psql -h 127.0.0.1 -U "$PG_USER" -d postgres -v ON_ERROR_STOP=1 -Atqc "$1"; }

if ! psql_tcp 'SELECT 1' >/dev/null 2>&1; then
    if [ "$installed_pg" -eq 1 ] && [ "$PG_USER" = postgres ] && [ "$(id -u)" -eq 0 ]; then
        # A fresh development install: let the local postgres user in over TCP without a
        # password, as the tests and the demo expect. Never done to an existing install.
        hba=$(su postgres -c "psql -Atqc 'SHOW hba_file'")
        sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
        su postgres -c "psql -Atqc 'SELECT pg_reload_conf()'" >/dev/null
        say "allowed the postgres user over 127.0.0.1 without a password (development install, $hba)"
    fi
    psql_tcp 'SELECT 1' >/dev/null 2>&1 || die "cannot log in to PostgreSQL at 127.0.0.1:5432 as $PG_USER: set SPLATFLEET_TEST_PG_PASSWORD, or allow it in pg_hba.conf ($(psql_tcp 'SELECT 1' 2>&1 | head -1))"
fi
say "PostgreSQL accepts $PG_USER on 127.0.0.1:5432"

if [ "$(psql_tcp "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" = 1 ]; then
    say "database $DB_NAME exists"
else
    psql_tcp "CREATE DATABASE \"$DB_NAME\"" || die "creating database $DB_NAME failed"
    say "created database $DB_NAME"
fi
say "ready: RabbitMQ amqp://guest:guest@127.0.0.1:5672, PostgreSQL postgres://$PG_USER@127.0.0.1:5432/$DB_NAME"
