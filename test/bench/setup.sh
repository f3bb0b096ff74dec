#!/bin/sh
# setup.sh obtains msmtp and dma for make bench without installing them:
# each Debian package and whichever of its libraries the machine lacks are
# fetched with apt-get download and unpacked with dpkg-deb -x under
# $TOOLS/root, so neither becomes the system MTA and /usr/sbin/sendmail is
# never touched (dma's package carries a usr/sbin/sendmail link: it lands
# in $TOOLS/root/usr/sbin, which nothing puts on a PATH). Nothing runs
# dpkg -i, a maintainer script or debconf. It is idempotent: once a
# program runs, a second call downloads nothing.
#
# dma reads its config from the compiled-in /etc/dma/dma.conf (it has no
# flag or variable for another path); the benchmark provides that file in a
# private mount namespace of its own (see sandbox.go), never on the machine.
#
# # Status files
#
# $TOOLS/status/msmtp and $TOOLS/status/dma hold key=value lines that the
# benchmark reads:
#
#	ok=yes                  or error=<why setup could not obtain it>
#	version=<pkg> <version> the Debian package
#	bin=<absolute path>     the program to run
#	ld_library_path=<dirs>  the unpacked libraries, for LD_LIBRARY_PATH
#
# The exit status is 0 even when a program could not be had: the benchmark
# then says so and reports the others' figures only.
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

# record NAME LINE... writes NAME's status file in one step.
record() {
	name=$1
	shift
	printf '%s\n' "$@" >"$TOOLS/status/$name.tmp" && mv "$TOOLS/status/$name.tmp" "$TOOLS/status/$name"
	log "$name: $1"
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

# missing BIN prints the libraries BIN needs that neither the machine nor
# $ROOT provides.
missing() {
	LD_LIBRARY_PATH=$LIBDIRS ldd "$1" 2>/dev/null | awk '/not found/ {print $1}'
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

# obtain NAME BIN CHECK... unpacks package NAME (and the libraries it
# lacks) until $ROOT/BIN runs, checks it by running CHECK (a command line
# whose "$bin" is the program) and writes NAME's status file.
obtain() {
	name=$1 rel=$2
	shift 2
	bin=$ROOT/$rel
	if [ ! -x "$bin" ]; then
		log "apt-get download $name"
		fetch "$name" || { record "$name" "error=apt-get download $name failed: $(tail -1 "$TOOLS/download.log")"; return; }
	fi
	# Unpack the library packages NAME (and then they) depend on until
	# ldd finds everything; three levels are plenty for gnutls, gsasl
	# and libsecret.
	todo=$name
	for level in 1 2 3; do
		[ -z "$(missing "$bin")" ] && break
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
	if [ -n "$(missing "$bin")" ]; then
		record "$name" "error=$name needs libraries setup.sh could not provide: $(missing "$bin" | tr '\n' ' ')"
		return
	fi
	if ! out=$("$@" 2>&1); then
		record "$name" "error=$name does not run: $(echo "$out" | tail -1)"
		return
	fi
	record "$name" "ok=yes" \
		"version=$name $(dpkg-deb -f "$TOOLS/debs/$name"_*.deb Version)" \
		"bin=$bin" \
		"ld_library_path=$LIBDIRS"
}

# dma has no --version; an unknown option proves that it starts (its
# libraries load and its option parser runs) without reading any config:
# it answers exit 64 and "invalid argument".
dma_runs() {
	out=$(LD_LIBRARY_PATH=$LIBDIRS "$ROOT/usr/sbin/dma" -x </dev/null 2>&1)
	code=$?
	case "$code:$out" in
	64:*"invalid argument"*) return 0 ;;
	esac
	echo "dma -x exited $code: $out"
	return 1
}

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
	for name in msmtp dma; do
		record "$name" "error=apt-get and dpkg-deb are needed to fetch $name (not a Debian system?)"
	done
	exit 0
fi

obtain msmtp usr/bin/msmtp env LD_LIBRARY_PATH="$LIBDIRS" "$ROOT/usr/bin/msmtp" --version
obtain dma usr/sbin/dma dma_runs
exit 0
