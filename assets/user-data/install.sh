#!/bin/bash
# Installs the unpacked runtime (this directory is /opt/volley) on a fresh
# instance. User data runs it once after writing /etc/volley/instance.env.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

id volley >/dev/null 2>&1 || useradd --system --home-dir /var/lib/volley --no-create-home --shell /sbin/nologin volley
ln -sf "$here/bin/volley" /usr/local/bin/volley
install -m 0644 "$here"/systemd/*.service "$here"/systemd/*.timer /etc/systemd/system/
systemctl daemon-reload

# A node of an HA pair (mta.ha): its mirror runs as volley and, on a promotion, starts
# the MTA through sudo (its promote_command, stacks/mirror-topology.ts): exactly that
# command line, nothing else.
if grep -q '^VOLLEY_MIRROR_CONFIG=' /etc/volley/instance.env; then
  cat > /etc/sudoers.d/volley-mirror.partial <<'SUDOERS'
Defaults:volley !requiretty
volley ALL=(root) NOPASSWD: /usr/bin/systemctl start --no-block volley-mta.service
SUDOERS
  chmod 0440 /etc/sudoers.d/volley-mirror.partial
  visudo -cqf /etc/sudoers.d/volley-mirror.partial
  mv /etc/sudoers.d/volley-mirror.partial /etc/sudoers.d/volley-mirror
fi

# The daemon needs its config before the bootstrap starts it.
"$here/bin/volley-config-sync"

systemctl enable volley-bootstrap.service volley-config-sync.timer
systemctl start volley-config-sync.timer
# --no-block: cloud-init must finish; the bootstrap reports to CloudFormation itself.
systemctl start --no-block volley-bootstrap.service
