#!/bin/sh
# Create the group that alone may read the config and write the spool,
# before the files that belong to it are unpacked.
set -e
if ! getent group relaymail >/dev/null 2>&1; then
	if command -v groupadd >/dev/null 2>&1; then
		groupadd --system relaymail
	else
		addgroup -S relaymail # Alpine
	fi
fi
