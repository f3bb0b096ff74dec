#!/bin/sh
# version.sh FORMAT prints the package version for FORMAT (deb, rpm or apk)
# from git, so that every later commit sorts after every earlier one:
#
#   at tag v1.2.3            1.2.3                   1.2.3
#   4 commits after v1.2.3   1.2.3+git4.<commit>     1.2.3_p4         (apk)
#   no v* tag yet            0.0.0~git<UTC commit time>.<commit>
#                                                    0.0.0_git<UTC commit time> (apk)
#
# apk versions allow no '~', '+' or letters after a suffix's digits.
set -eu
format=${1:-deb}
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
when=$(TZ=UTC git log -1 --date=format-local:%Y%m%d%H%M%S --format=%cd 2>/dev/null || echo 0)
if d=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
	tag=${d%%-*}
	tag=${tag#v}
	case $d in
	*-*-g*)
		n=${d#*-}
		n=${n%%-*}
		if [ "$format" = apk ]; then echo "${tag}_p$n"; else echo "$tag+git$n.$commit"; fi
		;;
	*) echo "$tag" ;;
	esac
elif [ "$format" = apk ]; then
	echo "0.0.0_git$when"
else
	echo "0.0.0~git$when.$commit"
fi
