#!/bin/sh
set -e
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl disable --now relaymail-queue.timer >/dev/null 2>&1 || true
fi
