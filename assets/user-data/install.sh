#!/bin/bash
# Installs the unpacked runtime (this directory is /opt/volley) on a fresh
# instance. User data runs it once after writing /etc/volley/instance.env.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

id volley >/dev/null 2>&1 || useradd --system --home-dir /var/lib/volley --no-create-home --shell /sbin/nologin volley
ln -sf "$here/bin/volley" /usr/local/bin/volley
install -m 0644 "$here"/systemd/*.service "$here"/systemd/*.timer /etc/systemd/system/
systemctl daemon-reload

# The daemon needs its config before the bootstrap starts it.
"$here/bin/volley-config-sync"

systemctl enable volley-bootstrap.service volley-config-sync.timer
systemctl start volley-config-sync.timer
# --no-block: cloud-init must finish; the bootstrap reports to CloudFormation itself.
systemctl start --no-block volley-bootstrap.service
