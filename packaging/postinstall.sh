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
# The mail command: /usr/bin/mail and /usr/bin/mailx, as the lowest
# alternative in Debian's "mailx" group, so that bsd-mailx, s-nail or
# mailutils win when installed; where there are no alternatives (Alpine),
# a link only when nothing has the name.
# free reports whether the name is free for an alternative: absent, or a
# link into /etc/alternatives (never another package's file or link, as
# Fedora's s-nail ships /usr/bin/mail).
free() {
	[ ! -e "$1" ] && [ ! -L "$1" ] || case "$(readlink "$1" 2>/dev/null)" in /etc/alternatives/*) true ;; *) false ;; esac
}
if command -v update-alternatives >/dev/null 2>&1; then
	if free /usr/bin/mailx && free /usr/bin/mail; then
		update-alternatives --install /usr/bin/mailx mailx /usr/lib/relaymail/mail 5 \
			--slave /usr/bin/mail mail /usr/lib/relaymail/mail >/dev/null 2>&1 || true
	fi
else
	for f in /usr/bin/mail /usr/bin/mailx; do
		if [ ! -e "$f" ] && [ ! -L "$f" ]; then
			ln -s /usr/lib/relaymail/mail "$f" || true
		fi
	done
fi
