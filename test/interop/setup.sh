#!/bin/sh
# setup.sh obtains the real Debian 12 mail clients that test/interop drives
# through relaymail, and records for each one whether that worked. It is
# idempotent: a client already installed or extracted costs no download.
#
# Rules it keeps:
#
#   - Nothing may replace /usr/sbin/sendmail. Packages whose dependencies
#     name no MTA (php-cli, mutt, git-email, libmailtools-perl) are
#     installed with --no-install-recommends, after a simulated install
#     shows that no package providing mail-transport-agent would come
#     along. Packages that Depend or Recommend an MTA (bsd-mailx: Depends
#     default-mta | mail-transport-agent; cron: Recommends it, and its
#     postinst would start a daemon) are fetched with apt-get download and
#     unpacked with dpkg-deb -x under $CLIENTS/root/<client>, never
#     installed.
#   - /usr/sbin/sendmail and /usr/lib/sendmail are checked before and after;
#     any change is an error (exit 1).
#   - apt-get update runs only when something must be fetched.
#
# # Status files
#
# For each client, $CLIENTS/status/<client> holds key=value lines:
#
#	ok=yes                  or error=<why setup could not obtain it>
#	version=<pkg> <version> the Debian packages behind it
#	bin=<absolute path>     the program to run
#	ld_library_path=<dirs>  only for unpacked clients
#
# Clients: php, git-send-email, mutt, bsd-mailx, cron-daemon (Debian's cron
# run for real in a private mount namespace; needs root and unshare -m).
# The exit status is 0 even when a client failed: the tests turn its
# error= into a skip, or a failure under INTEROP_REQUIRE_ALL=1.
set -u

here=$(cd "$(dirname "$0")" && pwd)
CLIENTS=${INTEROP_CLIENTS:-$here/.clients}
mkdir -p "$CLIENTS/status" "$CLIENTS/debs" "$CLIENTS/root" || exit 1
CLIENTS=$(cd "$CLIENTS" && pwd)
export DEBIAN_FRONTEND=noninteractive

log() { echo "setup.sh: $*" >&2; }

# sendmail_state prints what /usr/sbin/sendmail and /usr/lib/sendmail are.
sendmail_state() {
	for f in /usr/sbin/sendmail /usr/lib/sendmail; do
		if [ -e "$f" ] || [ -L "$f" ]; then
			printf '%s -> %s %s\n' "$f" "$(readlink -f "$f")" "$(sha256sum <"$f" 2>/dev/null | cut -c1-16)"
		else
			printf '%s absent\n' "$f"
		fi
	done
}
before=$(sendmail_state)

# record CLIENT LINE... writes the status file in one step.
record() {
	name=$1
	shift
	printf '%s\n' "$@" >"$CLIENTS/status/$name.tmp" && mv "$CLIENTS/status/$name.tmp" "$CLIENTS/status/$name"
	log "$name: $1"
}

updated=no
apt_update() {
	[ "$updated" = yes ] && return 0
	log "apt-get update"
	apt-get update -qq >"$CLIENTS/apt-update.log" 2>&1 || { log "apt-get update failed: $(tail -1 "$CLIENTS/apt-update.log")"; return 1; }
	updated=yes
}

installed() { dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
pkgver() { dpkg-query -W -f '${Package} ${Version}' "$1" 2>/dev/null; }

# mta_free PKG... fails, saying why, if installing PKG... would bring in a
# package that provides mail-transport-agent, or remove any package.
mta_free() {
	sim=$(apt-get -s install --no-install-recommends "$@" 2>&1) || { echo "$sim" | tail -1; return 1; }
	if echo "$sim" | grep -q '^Remv '; then
		echo "installing $* would remove$(echo "$sim" | awk '/^Remv /{printf " %s", $2}')"
		return 1
	fi
	for p in $(echo "$sim" | awk '/^Inst /{print $2}'); do
		if apt-cache show --no-all-versions "$p" 2>/dev/null | grep -Eq '^Provides:.*mail-transport-agent'; then
			echo "installing $* would bring in $p, an MTA"
			return 1
		fi
	done
}

# apt_client NAME BIN PKG... installs PKG... unless all are installed.
apt_client() {
	name=$1 bin=$2
	shift 2
	missing=
	for p in "$@"; do installed "$p" || missing="$missing $p"; done
	if [ -n "$missing" ]; then
		apt_update || { record "$name" "error=apt-get update failed"; return; }
		# shellcheck disable=SC2086
		why=$(mta_free $missing) || { record "$name" "error=$why"; return; }
		log "apt-get install --no-install-recommends$missing"
		# shellcheck disable=SC2086
		if ! apt-get install -y -qq --no-install-recommends $missing >"$CLIENTS/apt-$name.log" 2>&1; then
			record "$name" "error=apt-get install$missing failed: $(tail -1 "$CLIENTS/apt-$name.log")"
			return
		fi
	fi
	if ! [ -x "$bin" ]; then
		record "$name" "error=$bin missing after installing $*"
		return
	fi
	v=
	for p in "$@"; do v="$v${v:+, }$(pkgver "$p")"; done
	record "$name" "ok=yes" "version=$v" "bin=$bin"
}

# deb_client NAME BIN PKG... downloads PKG... and unpacks them into
# $CLIENTS/root/NAME; BIN is relative to that root.
deb_client() {
	name=$1 bin=$2
	shift 2
	root=$CLIENTS/root/$name
	v=
	for p in "$@"; do
		deb=$(ls "$CLIENTS/debs/${p}_"*.deb 2>/dev/null | head -1)
		if [ -z "$deb" ]; then
			apt_update || { record "$name" "error=apt-get update failed"; return; }
			log "apt-get download $p"
			if ! (cd "$CLIENTS/debs" && apt-get -o APT::Sandbox::User=root download "$p") >"$CLIENTS/download-$p.log" 2>&1; then
				record "$name" "error=apt-get download $p failed: $(tail -1 "$CLIENTS/download-$p.log")"
				return
			fi
			deb=$(ls "$CLIENTS/debs/${p}_"*.deb 2>/dev/null | head -1)
		fi
		if [ ! -e "$root/.$p.unpacked" ]; then
			dpkg-deb -x "$deb" "$root" || { record "$name" "error=dpkg-deb -x $deb failed"; return; }
			touch "$root/.$p.unpacked"
		fi
		v="$v${v:+, }$p $(dpkg-deb -f "$deb" Version)"
	done
	ldpath=
	for d in "$root"/lib/*-linux-gnu "$root"/usr/lib/*-linux-gnu; do
		[ -d "$d" ] && ldpath="$ldpath${ldpath:+:}$d"
	done
	if ! [ -x "$root/$bin" ]; then
		record "$name" "error=$root/$bin missing after unpacking $*"
		return
	fi
	missing=$(LD_LIBRARY_PATH=$ldpath ldd "$root/$bin" 2>&1 | grep 'not found')
	if [ -n "$missing" ]; then
		record "$name" "error=$root/$bin needs libraries that are not installed: $(echo "$missing" | tr -s ' \t\n' ' ')"
		return
	fi
	record "$name" "ok=yes" "version=$v" "bin=$root/$bin" "ld_library_path=$ldpath"
}

apt_client php /usr/bin/php php-cli php8.2-cli
# Debian builds git with NO_PERL_CPAN_FALLBACKS, so send-email dies without
# Mail::Address, which git-email only Recommends: libmailtools-perl.
apt_client git-send-email /usr/lib/git-core/git-send-email git-email libmailtools-perl
apt_client mutt /usr/bin/mutt mutt
deb_client bsd-mailx usr/bin/bsd-mailx bsd-mailx liblockfile1
deb_client cron-daemon usr/sbin/cron cron

# The real cron daemon mails through the hardcoded /usr/sbin/sendmail, so
# the test runs it in a private mount namespace where a tmpfs over /usr/sbin
# holds the wrapper. Check that this machine allows it.
if grep -q '^ok=yes' "$CLIENTS/status/cron-daemon"; then
	if [ "$(id -u)" != 0 ]; then
		record cron-daemon "error=running cron for real needs root (mount namespace, crontab spool)"
	elif ! why=$(unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /usr/sbin' 2>&1); then
		record cron-daemon "error=cannot mount in a private mount namespace: $why"
	fi
fi

after=$(sendmail_state)
if [ "$before" != "$after" ]; then
	log "ERROR: /usr/sbin/sendmail or /usr/lib/sendmail changed during setup"
	log "before: $before"
	log "after:  $after"
	exit 1
fi
