#!/bin/sh
# The queue and the config stay when the package is removed: mail waiting
# there must not be lost. Purging (dpkg -P) removes them and the group.
set -e
if [ "$1" = "purge" ]; then
	rm -rf /var/spool/relaymail
	rm -f /etc/sendmail.conf
	if getent group relaymail >/dev/null 2>&1; then
		groupdel relaymail 2>/dev/null || delgroup relaymail 2>/dev/null || true
	fi
fi
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
fi
