# relaymail: make build | test | demo | fuzz | vet | vulncheck | man | package | clean
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := relaymail

export CGO_ENABLED := 0

.PHONY: all build test demo vet fuzz vulncheck man package clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

# The whole suite: unit tests, the end-to-end tests that run the built
# binary against a real STARTTLS+AUTH smarthost, and the CLI scripts.
# -race needs cgo; it is turned on when a C compiler is present.
# -count=1: test/e2e and test/bench build the binary themselves, which
# go test's cache cannot see, so a cached pass could hide a change.
test:
	$(GO) vet ./...
	@if command -v gcc >/dev/null 2>&1; then \
		echo "CGO_ENABLED=1 $(GO) test -race -count=1 ./..."; CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 12m ./...; \
	else \
		echo "$(GO) test ./... (no C compiler: without -race)"; $(GO) test -count=1 -timeout 12m ./...; \
	fi

# Sends a sample message through the real binary to a throwaway local
# smarthost (STARTTLS + AUTH) and shows what arrived.
demo: build
	$(GO) run ./test/smarthost -demo ./$(BIN)

# go vet, gofmt, the module checksums, and a build of govulncheck (pinned
# in go.mod as a tool), which must keep building where its database cannot
# be reached.
vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) mod verify
	$(GO) build -o /dev/null golang.org/x/vuln/cmd/govulncheck

# Man pages from doc/*.md, with go-md2man (pinned in go.mod as a tool).
man:
	mkdir -p build
	$(GO) tool go-md2man -in doc/sendmail.8.md -out build/sendmail.8
	$(GO) tool go-md2man -in doc/sendmail.conf.5.md -out build/sendmail.conf.5
	gzip -9nf build/sendmail.8 build/sendmail.conf.5

# deb, rpm and apk in dist/, with nfpm (pinned in go.mod as a tool; see
# nfpm.yaml): the static binary (version from git), its links, the config,
# the man pages, the spool and the queue timer. Versions come from
# packaging/version.sh, which keeps later commits sorting after earlier
# ones. apk's .PKGINFO takes a one-line description: its config is
# nfpm.yaml with the description cut to its first line.
GOARCH     ?= $(shell $(GO) env GOARCH)
PKGVERSION ?= $(shell sh packaging/version.sh deb)
APKVERSION ?= $(shell sh packaging/version.sh apk)
package: man
	mkdir -p build dist
	rm -f dist/relaymail[-_]*
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o build/relaymail .
	awk '/^description: \|/ { getline; sub(/^ +/, ""); print "description: " $$0; cut = 1; next } \
		cut && /^  / { next } { cut = 0; print }' nfpm.yaml >build/nfpm-apk.yaml
	for p in deb rpm; do \
		VERSION=$(PKGVERSION) GOARCH=$(GOARCH) $(GO) tool nfpm package -f nfpm.yaml -p $$p -t dist/ || exit 1; \
	done
	VERSION=$(APKVERSION) GOARCH=$(GOARCH) $(GO) tool nfpm package -f build/nfpm-apk.yaml -p apk -t dist/
	ls -l dist/

# Known vulnerabilities in the code paths relaymail uses, from
# vuln.go.dev: needs network access (CI here has none; make vet builds the
# tool so this target cannot rot).
vulncheck:
	$(GO) tool govulncheck ./...

# Short runs of every fuzz target (go test allows one target per run).
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run XXX -fuzz '^FuzzParseArgs$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run XXX -fuzz '^FuzzParseList$$' -fuzztime $(FUZZTIME) ./internal/address
	$(GO) test -run XXX -fuzz '^FuzzIntake$$' -fuzztime $(FUZZTIME) ./internal/intake
	$(GO) test -run XXX -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run XXX -fuzz '^FuzzEnvelope$$' -fuzztime $(FUZZTIME) ./internal/spool
	$(GO) test -run XXX -fuzz '^FuzzWrite$$' -fuzztime $(FUZZTIME) ./internal/dsn
	$(GO) test -run XXX -fuzz '^FuzzBareFilter$$' -fuzztime $(FUZZTIME) ./internal/smtpd
	$(GO) test -run XXX -fuzz '^FuzzExpand$$' -fuzztime $(FUZZTIME) ./internal/aliases
	$(GO) test -run XXX -fuzz '^FuzzParseFile$$' -fuzztime $(FUZZTIME) ./internal/aliases
	$(GO) test -run XXX -fuzz '^FuzzMail$$' -fuzztime $(FUZZTIME) ./internal/mailx

clean:
	rm -rf $(BIN) build dist

# The interop suite, as root on Debian. test/interop: the real Debian 12
# clients (PHP mail(), cron, bsd-mailx, mutt, git send-email, the PHP,
# Ruby, Perl and Node mail libraries) send through the built binary to the
# test smarthost; setup.sh installs or unpacks them (never an MTA, never a
# change to /usr/sbin/sendmail) and a client it could not obtain fails the
# run instead of being skipped. test/package: the .deb built here is
# installed with apt-get on throwaway overlay copies of the machine, and the
# clients send through the installed /usr/sbin/sendmail to Debian's Postfix.
.PHONY: interop
interop: package
	sh test/interop/setup.sh
	INTEROP_REQUIRE_ALL=1 INTEROP_DEB=$(CURDIR)/dist/relaymail_$(PKGVERSION)_$(GOARCH).deb \
		$(GO) test -tags interop -count=1 -v -timeout 15m ./test/interop/ ./test/package/

# The benchmark of issue 5: relaymail against msmtp and dma, interleaved,
# on a STARTTLS+AUTH smarthost, on loopback and across a 50 ms link (real
# TCP between network namespaces, test/bench/netem; needs root). setup.sh
# unpacks msmtp and dma under test/bench/.tools (never installed as the
# MTA); without them the report has absolute figures only. The results go
# to BENCH.md and BENCH.svg; go test ./test/bench runs it in -smoke mode.
.PHONY: bench
bench: build
	sh test/bench/setup.sh
	$(GO) run ./test/bench -relaymail ./$(BIN) -out BENCH.md
