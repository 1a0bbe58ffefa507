#!/usr/bin/env bash
# The Debian programs the tests drive for real (Postfix's smtp-source and
# smtp-sink, swaks, HAProxy, dnsmasq, dkimpy, opendkim's key tool, and the
# Perl modules swaks needs for --tls). `npm test` runs this first, so that no
# test fails later for a missing tool: as root with apt-get it installs what
# is missing and says so; otherwise it stops at once with the one command to
# run. .ci/run calls it too. (sqlite3 reads the accounting files the SQLite sink writes; bind9, its
# dnssec-signzone and unbound are the DNSSEC world of the DANE tests, dig checks it; strace interrupts a
# mkfs.ext4 part-way for the bootstrap tests.) Only checks when everything is there (~50 ms).
# It also stops a run that is not root: some tests mount a tmpfs, attach loop
# devices or create network namespaces, and would otherwise fail late.
set -euo pipefail

# command:package pairs; a package is wanted when its command is missing.
peers=(smtp-source:postfix smtp-sink:postfix swaks:swaks haproxy:haproxy dnsmasq:dnsmasq-base
       dkimverify:python3-dkim opendkim-genkey:opendkim-tools ip:iproute2 losetup:mount mkfs.ext4:e2fsprogs curl:curl sqlite3:sqlite3
       named:bind9 dnssec-signzone:bind9-utils dig:bind9-dnsutils unbound:unbound strace:strace)
need=()
for pair in "${peers[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
# swaks only recommends the Perl modules it needs for --tls and IPv6 sockets.
perl -MNet::SSLeay -MIO::Socket::INET6 -e1 2>/dev/null || need+=(libnet-ssleay-perl libio-socket-inet6-perl)
if [ ${#need[@]} -eq 0 ]; then
  [ "$(id -u)" -eq 0 ] && exit 0
  echo "npm test: some tests mount a tmpfs, attach loop devices or create network namespaces, which needs root: run it as root (sudo npm test)" >&2
  exit 1
fi

mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
cmd="apt-get install -y --no-install-recommends ${need[*]}"
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "npm test: the tests drive these Debian packages, which are missing: ${need[*]}" >&2
  echo "Install them first (as root):  $cmd" >&2
  exit 1
fi
echo "npm test: installing the Debian packages the tests drive: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Postfix asks how to configure itself; we only want its tools, never its service.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# bind9 and unbound are packaged as services on port 53 (unbound's may even rewrite resolv.conf);
# the tests want only their programs and run private instances on high ports: stop (and, under
# systemd, disable) the services this install just started, never ones that were there before.
# (In a container whose policy-rc.d forbids starting services, none was started.)
for pair in bind9:named bind9:named-resolvconf unbound:unbound unbound:unbound-resolvconf; do
  printf '%s\n' "${need[@]}" | grep -qx "${pair%%:*}" || continue
  svc=${pair##*:}
  if [ -d /run/systemd/system ]; then
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  elif [ -x "/etc/init.d/$svc" ]; then
    "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
  fi
done
