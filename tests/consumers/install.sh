#!/bin/sh
# Installs the real monitoring consumers that tests/consumers.rs starts on loopback:
# InfluxDB 1.6, Icinga 2, Nagios 4 core, Zabbix 6.0 server (PostgreSQL) + frontend + agent
# (for zabbix_sender), PostgreSQL, PHP CLI. Debian 12, run as root. Idempotent.
#
# No package may start its own daemon (no systemd, and CI must not have stray services):
# a temporary policy-rc.d makes invoke-rc.d refuse, and is removed afterwards unless it was
# already there.
set -eu

PACKAGES="
  influxdb
  icinga2
  nagios4-core
  zabbix-server-pgsql zabbix-frontend-php zabbix-agent
  postgresql
  php-cli php-cgi php-pgsql
  curl ca-certificates
"

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing="$missing $p"
  fi
done
if [ -z "$missing" ]; then
  echo "consumers: all packages already installed"
  exit 0
fi

created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
cleanup() {
  if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
# php-cgi satisfies php8.2's "libapache2-mod-php | php-fpm | php-cgi" without pulling in apache2.
if ! apt-get install -y --no-install-recommends $missing; then
  apt-get update
  apt-get install -y --no-install-recommends $missing
fi
echo "consumers: installed:$missing"
