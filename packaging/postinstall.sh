#!/bin/sh
# Modes of the setgid install (see the README's Security section), set
# again in case the group was created after the files were unpacked.
set -e
chown root:relaymail /usr/sbin/sendmail /etc/sendmail.conf /var/spool/relaymail /var/spool/relaymail/failed /var/spool/relaymail/run
chmod 2755 /usr/sbin/sendmail
chmod 0640 /etc/sendmail.conf
chmod 0770 /var/spool/relaymail /var/spool/relaymail/failed /var/spool/relaymail/run
# Flush the queue every few minutes where systemd runs.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
	systemctl enable --now relaymail-queue.timer || true
fi
