#!/bin/sh
# On removal (not on upgrade: deb "upgrade", rpm $1 = 1, what stays):
# stop the units, and take back the mail command's alternative or links.
set -e
case "$1" in
upgrade | 1) exit 0 ;;
esac
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl disable --now relaymail-queue.timer >/dev/null 2>&1 || true
	systemctl disable --now relaymail-listen.socket relaymail-listen.service >/dev/null 2>&1 || true
fi
if command -v update-alternatives >/dev/null 2>&1; then
	update-alternatives --remove mailx /usr/lib/relaymail/mail >/dev/null 2>&1 || true
fi
for f in /usr/bin/mail /usr/bin/mailx; do
	if [ "$(readlink "$f" 2>/dev/null)" = /usr/lib/relaymail/mail ]; then
		rm -f "$f"
	fi
done
