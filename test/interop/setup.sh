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
# run for real in a private mount namespace; needs root and unshare -m),
# and the application mail libraries: symfony-mailer, phpmailer, ruby-mail,
# email-sender (Perl) from Debian, nodemailer from npm (pinned, installed
# under $CLIENTS/node; a node from Debian when none is installed). Their
# bin= is the interpreter; the tests run them with the wrapper as
# /usr/sbin/sendmail in a private mount namespace, so they too need root.
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
apt_client symfony-mailer /usr/bin/php php-cli php-symfony-mailer
apt_client phpmailer /usr/bin/php php-cli libphp-phpmailer
apt_client ruby-mail /usr/bin/ruby ruby ruby-mail
apt_client email-sender /usr/bin/perl libemail-sender-perl libemail-mime-perl

# nodemailer_client installs Nodemailer from npm, pinned: 10.6.1 needs
# node 20 or later; Debian 12's node 18 gets 7.0.9, whose sendmail
# transport calls sendmail the same way.
nodemailer_client() {
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		apt_client node-runtime /usr/bin/node nodejs npm
		grep -q '^ok=yes' "$CLIENTS/status/node-runtime" || { record nodemailer "error=no node: $(sed -n 's/^error=//p' "$CLIENTS/status/node-runtime")"; return; }
	fi
	major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) || { record nodemailer "error=node does not run"; return; }
	want=7.0.9
	[ "$major" -ge 20 ] && want=10.6.1
	dir=$CLIENTS/node
	have=$(node -p "require('$dir/node_modules/nodemailer/package.json').version" 2>/dev/null)
	if [ "$have" != "$want" ]; then
		mkdir -p "$dir" && echo '{"private": true}' >"$dir/package.json"
		log "npm install nodemailer@$want"
		if ! (cd "$dir" && timeout 300 npm install --no-audit --no-fund --save-exact "nodemailer@$want") >"$CLIENTS/npm-nodemailer.log" 2>&1; then
			record nodemailer "error=npm install nodemailer@$want failed: $(tail -1 "$CLIENTS/npm-nodemailer.log")"
			return
		fi
	fi
	record nodemailer "ok=yes" "version=nodemailer $want (npm), node $(node -v)" "bin=$(command -v node)" "node_path=$dir/node_modules"
}
nodemailer_client

# The real cron daemon and the libraries' defaults use /usr/sbin/sendmail,
# so the tests run them in a private mount namespace where a tmpfs over
# /usr/sbin holds the wrapper. Check that this machine allows it.
for c in cron-daemon symfony-mailer phpmailer ruby-mail email-sender nodemailer; do
	grep -q '^ok=yes' "$CLIENTS/status/$c" || continue
	if [ "$(id -u)" != 0 ]; then
		record "$c" "error=the test needs root: it mounts the wrapper over /usr/sbin/sendmail in a private mount namespace"
	elif ! why=$(unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /usr/sbin' 2>&1); then
		record "$c" "error=cannot mount in a private mount namespace: $why"
	fi
done

after=$(sendmail_state)
if [ "$before" != "$after" ]; then
	log "ERROR: /usr/sbin/sendmail or /usr/lib/sendmail changed during setup"
	log "before: $before"
	log "after:  $after"
	exit 1
fi
