#!/bin/sh
# setup.sh obtains msmtp for make bench without installing it: the Debian
# package and whichever of its libraries the machine lacks are fetched with
# apt-get download and unpacked with dpkg-deb -x under $TOOLS/root, so msmtp
# never becomes the system MTA and /usr/sbin/sendmail is never touched. It
# is idempotent: once msmtp runs, a second call downloads nothing.
#
# # Status file
#
# $TOOLS/status/msmtp holds key=value lines that the benchmark reads:
#
#	ok=yes                  or error=<why setup could not obtain it>
#	version=<pkg> <version> the Debian package
#	bin=<absolute path>     the program to run
#	ld_library_path=<dir>   the unpacked libraries, for LD_LIBRARY_PATH
#
# The exit status is 0 even when msmtp could not be had: the benchmark then
# says so and reports relaymail's absolute figures only.
set -u

here=$(cd "$(dirname "$0")" && pwd)
TOOLS=${BENCH_TOOLS:-$here/.tools}
mkdir -p "$TOOLS/status" "$TOOLS/debs" "$TOOLS/root" || exit 1
TOOLS=$(cd "$TOOLS" && pwd)
ROOT=$TOOLS/root
triplet=$(uname -m)-linux-gnu
LIBDIRS="$ROOT/usr/lib/$triplet:$ROOT/lib/$triplet:$ROOT/usr/lib"
export DEBIAN_FRONTEND=noninteractive

log() { echo "setup.sh: $*" >&2; }

# record LINE... writes the status file in one step.
record() {
	printf '%s\n' "$@" >"$TOOLS/status/msmtp.tmp" && mv "$TOOLS/status/msmtp.tmp" "$TOOLS/status/msmtp"
	log "msmtp: $1"
}

# fetch PKG downloads PKG's .deb into $TOOLS/debs (unless it is there) and
# unpacks it under $ROOT.
updated=no
fetch() {
	if ! ls "$TOOLS/debs/$1"_*.deb >/dev/null 2>&1; then
		if ! (cd "$TOOLS/debs" && apt-get download "$1" >"$TOOLS/download.log" 2>&1); then
			if [ "$updated" = no ]; then
				log "apt-get update"
				apt-get update -qq >"$TOOLS/apt-update.log" 2>&1 || return 1
				updated=yes
			fi
			(cd "$TOOLS/debs" && apt-get download "$1" >"$TOOLS/download.log" 2>&1) || return 1
		fi
	fi
	dpkg-deb -x "$TOOLS/debs/$1"_*.deb "$ROOT"
}

# missing prints the libraries msmtp needs that neither the machine nor
# $ROOT provides.
missing() {
	LD_LIBRARY_PATH=$LIBDIRS ldd "$ROOT/usr/bin/msmtp" 2>/dev/null | awk '/not found/ {print $1}'
}

# libdeps PKG prints the library packages (lib*) PKG depends on that are not
# installed on the machine.
libdeps() {
	dpkg-deb -f "$TOOLS/debs/$1"_*.deb Depends 2>/dev/null |
		tr ',|' '\n\n' | sed 's/(.*//; s/:any//; s/[[:space:]]//g' | grep '^lib' |
		while read -r p; do
			dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
		done
}

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
	record "error=apt-get and dpkg-deb are needed to fetch msmtp (not a Debian system?)"
	exit 0
fi

if [ ! -x "$ROOT/usr/bin/msmtp" ]; then
	log "apt-get download msmtp"
	fetch msmtp || { record "error=apt-get download msmtp failed: $(tail -1 "$TOOLS/download.log")"; exit 0; }
fi

# Unpack the library packages msmtp (and then they) depend on until ldd
# finds everything; three levels are plenty for gnutls, gsasl and libsecret.
todo=msmtp
for level in 1 2 3; do
	[ -z "$(missing)" ] && break
	next=
	for p in $todo; do
		for d in $(libdeps "$p"); do
			[ -e "$TOOLS/debs/.done-$d" ] && continue
			log "apt-get download $d (for $p)"
			fetch "$d" && touch "$TOOLS/debs/.done-$d" && next="$next $d"
		done
	done
	todo=$next
done

if [ -n "$(missing)" ]; then
	record "error=msmtp needs libraries setup.sh could not provide: $(missing | tr '\n' ' ')"
	exit 0
fi
if ! out=$(LD_LIBRARY_PATH=$LIBDIRS "$ROOT/usr/bin/msmtp" --version 2>&1); then
	record "error=msmtp --version failed: $(echo "$out" | tail -1)"
	exit 0
fi
record "ok=yes" \
	"version=msmtp $(dpkg-deb -f "$TOOLS/debs"/msmtp_*.deb Version)" \
	"bin=$ROOT/usr/bin/msmtp" \
	"ld_library_path=$LIBDIRS"
