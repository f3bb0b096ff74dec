package main

// flags.go turns sendmail's argv into an Invocation. It does no I/O: nothing
// here opens a file, reads the environment or looks at the clock.
//
// Rules it keeps, as Postfix's sendmail(1) does (its getopt list is
// "A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx"):
//   - Flags cluster ("-tiv") and a flag that takes a value takes the rest of
//     its word ("-fbob", "-oem", "-odb", "-FCronDaemon") or, when nothing is
//     left, the whole next argument, even one that starts with "-" (POSIX
//     getopt: "-f -x" sets the sender to "-x").
//   - -q is the exception: it takes only the rest of its own word ("-q",
//     "-q15m", "-qIid", "-qRsite") and never the next argument, because
//     "sendmail -q" is run with nothing after it.
//   - "--" ends the options, and so does the first argument that is not an
//     option: everything after is a recipient. The arguments are never
//     permuted (Postfix calls getopt with a leading "+" for that). A
//     recipient that starts with "-" is refused unless it comes after
//     "--": "sendmail root -oi" is a mistake (or an attack through a
//     program that passes user input as the address), not a message to
//     "-oi".
//   - No value may contain CR, LF or NUL (-f, -r, -F, -V, -N, -R, ignored
//     ones such as -L, and every recipient word): such a value could
//     inject SMTP commands or header fields. Recipient syntax is checked
//     later, with the config at hand.
//   - Every error carries sysexits.Usage (64).
//
// # Flags
//
// Parsed:
//
//	-B type        body type: 7BIT or 8BITMIME (case-insensitive)
//	-bm            deliver a message read from stdin (the default)
//	-bp            list the queue (also: run as mailq)
//	-bs            SMTP on stdin and stdout
//	-bv            verify recipients
//	-bV, --version print the version
//	-bd, -bl       daemon
//	-bi, -I        check the aliases (also: run as newaliases)
//	-bh, -bH       host status: accepted and nothing done, as Postfix does
//	-C file        config file
//	-F name        sender's full name
//	-f addr, -r addr  envelope sender ("" and "<>" are the null sender)
//	-i, -oi        a line with a single "." does not end the message
//	-N list        DSN NOTIFY: never, or success,delay,failure
//	-R ret         DSN RET: full or hdrs
//	-V envid       DSN ENVID
//	-oe[pmqwe]     error mode
//	-od[ibqd]      delivery mode; d (deferred) is treated as q
//	-q             run the queue once
//	-q<interval>   run the queue every interval (sendmail units s m h d w;
//	               a number without a unit is minutes)
//	-qI<id>, -qR<site>  run the queue for one message or one site
//	-t             read recipients from To, Cc and Bcc
//	-v             verbose; may be repeated
//	--help         print usage (ModeHelp)
//	--check        show the config, connect and log in to the smarthost, send nothing
//
// Accepted and ignored, recorded in Invocation.Ignored ("-G", "-h 30"):
//
//	-A x, -e x, -h n, -L label, -O opt=val, -p proto, -X file   (take a value)
//	-c, -G, -m, -U, -x                                          (take none)
//	-o<x> for every x but e, d and i (-o7, -o8, -om, -oA..., -oQ...)
//
// Refused with a usage error:
//
//	-n  sendmail's "do not expand aliases". Postfix refuses it ("-n option
//	    not supported") and so do we: ignoring it would expand the aliases
//	    the caller asked us not to, sending mail for root to whoever root is
//	    aliased to, and no caller can depend on it since Postfix fails.
//	-s  not a sendmail flag (Postfix refuses it too); it is mostly mail(1)'s
//	    -s subject given to sendmail, whose subject would become a recipient.
//	-qS, -qf, -qG and other -q forms, -b modes not listed above, -d, and
//	any other letter.

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"relaymail/internal/mailx"
	"relaymail/internal/sysexits"
)

// Mode is what an invocation asks sendmail to do.
type Mode int

const (
	ModeSend    Mode = iota // -bm (default)
	ModeList                // -bp, or run as mailq
	ModeSMTP                // -bs
	ModeVerify              // -bv
	ModeVersion             // -bV, --version
	ModeDaemon              // -bd, -bl
	ModeAliases             // -bi, -I, or run as newaliases
	ModeQueue               // -q, -q<interval>, -qI<id>, -qR<site>
	ModeIgnore              // -bh, -bH: Postfix exits 0
	ModeHelp                // --help: main prints the usage and exits 0
	ModeDelete              // --delete id...: remove queued messages (Postfix's postsuper -d)
	ModeRequeue             // --requeue id...: make queued messages due now (postsuper -r)
	ModeCheck               // --check: show the config, log in to the smarthost, send nothing
	ModeMail                // run as mail or mailx (or "relaymail mail"): internal/mailx
)

// String returns a short lowercase name, such as "send" or "queue".
func (m Mode) String() string {
	names := [...]string{
		ModeSend: "send", ModeList: "list", ModeSMTP: "smtp", ModeVerify: "verify",
		ModeVersion: "version", ModeDaemon: "daemon", ModeAliases: "aliases",
		ModeQueue: "queue", ModeIgnore: "ignore", ModeHelp: "help",
		ModeDelete: "delete", ModeRequeue: "requeue", ModeCheck: "check",
		ModeMail: "mail",
	}
	if m >= 0 && int(m) < len(names) {
		return names[m]
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Invocation is everything the command line asks for.
type Invocation struct {
	Mode          Mode
	Sender        string         // -f/-r value exactly as given (may be "<>", "Name <a@b>"); "" when not given
	SenderSet     bool           // -f or -r was given (Sender may legitimately be "" or "<>")
	FullName      string         // -F
	FullNameSet   bool           // -F was given
	Recipients    []string       // non-option arguments, as given (each may hold a comma-separated list); nil when none
	ReadHeaders   bool           // -t
	IgnoreDots    bool           // -i, -oi
	ErrorMode     byte           // 'p' (default), 'm', 'q', 'w', 'e' from -oe?
	Delivery      byte           // 0 when not given, else 'i', 'b', 'q' (-odd is 'q')
	Body          string         // "", "7BIT" or "8BITMIME" (-B)
	DSNNotify     []string       // -N: "NEVER", or some of "SUCCESS", "DELAY", "FAILURE" in the order given; nil when not given
	DSNReturn     string         // -R: "FULL" or "HDRS"; "" when not given
	EnvID         string         // -V
	ConfigPath    string         // -C
	Verbose       int            // count of -v
	QueueInterval time.Duration  // -q5m, -q1h30m; 0 = run once
	QueueID       string         // -qI<id>
	QueueSite     string         // -qR<site>
	Ignored       []string       // obsolete or ignored flags seen, e.g. "-G", "-om", "-h 30"; shown with -v
	JSON          bool           // --json: mailq prints JSON, for monitoring
	Drain         bool           // --drain: deliver what is due, sharing max_connections runners (what -odb starts)
	Mail          *mailx.Options // the mail command line, with ModeMail
}

// Flags that take a value and flags that take none, as in Postfix's getopt
// list; -q is handled apart. Everything else is unknown.
const (
	valueFlags = "ABCFLNORVXbefhopr"
	plainFlags = "GIUcimntvx"
)

// parseArgs parses args (argv without argv[0]). progName is the name the
// program was run as: "mailq" lists the queue and "newaliases" checks the
// aliases, as with Postfix; any other name sends. Errors carry
// sysexits.Usage.
func parseArgs(progName string, args []string) (Invocation, error) {
	inv := Invocation{ErrorMode: 'p'}
	switch name := path.Base(progName); {
	case name == "mailq":
		inv.Mode = ModeList
	case name == "newaliases":
		inv.Mode = ModeAliases
	case name == "mail" || name == "mailx" || name == "relaymail" && len(args) > 0 && args[0] == "mail":
		if name == "relaymail" {
			args = args[1:]
		}
		m, err := mailx.ParseArgs(args)
		if err != nil {
			return Invocation{}, usageErrorf("%v", err)
		}
		inv.Mode, inv.Mail, inv.Verbose = ModeMail, &m, m.Verbose
		return inv, nil
	}
	if err := inv.parse(args); err != nil {
		return Invocation{}, err
	}
	return inv, nil
}

// parse applies args to inv.
func (inv *Invocation) parse(args []string) error {
	i := 0
	dashdash := false
args:
	for ; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			i++
			dashdash = true
			break args
		case arg == "--version":
			inv.Mode = ModeVersion
			continue
		case arg == "--help":
			inv.Mode = ModeHelp
			continue
		case arg == "--json":
			inv.JSON = true
			continue
		case arg == "--drain":
			inv.Mode = ModeQueue
			inv.Drain = true
			continue
		case arg == "--delete":
			inv.Mode = ModeDelete
			continue
		case arg == "--requeue":
			inv.Mode = ModeRequeue
			continue
		case arg == "--check":
			inv.Mode = ModeCheck
			continue
		case strings.HasPrefix(arg, "--"):
			return usageErrorf("unknown option %s", quoteArg(arg))
		case len(arg) < 2 || arg[0] != '-':
			break args // the first recipient ("-" alone is one, as with getopt)
		}
		for j := 1; j < len(arg); j++ {
			c := arg[j]
			switch {
			case strings.IndexByte(plainFlags, c) >= 0:
				if err := inv.plainFlag(c); err != nil {
					return err
				}
			case c == 'q':
				if err := inv.queueFlag(arg[j+1:]); err != nil {
					return err
				}
				continue args
			case strings.IndexByte(valueFlags, c) >= 0:
				val := arg[j+1:]
				if val == "" {
					if i+1 == len(args) {
						return usageErrorf("option -%c needs a value", c)
					}
					i++
					val = args[i]
				}
				if err := inv.valueFlag(c, val); err != nil {
					return err
				}
				continue args
			case c == 's':
				return usageErrorf("unknown option -s: sendmail takes no subject; write a Subject: header in the message")
			default:
				return usageErrorf("unknown option %s", quoteArg("-"+arg[j:j+1]))
			}
		}
	}
	if i < len(args) {
		inv.Recipients = append([]string(nil), args[i:]...)
	}
	for _, r := range inv.Recipients {
		if err := checkEnvelopeValue(r); err != nil {
			return usageErrorf("recipient %q %v", r, err)
		}
		// Options end at the first recipient; a later "-oQ/tmp" or "-C
		// file" is a mistake or an attack, never an address.
		if strings.HasPrefix(r, "-") && !dashdash {
			return usageErrorf("recipient %q starts with -: options go before the recipients, and an address that starts with - goes after --", r)
		}
	}
	return inv.check()
}

// plainFlag applies a flag that takes no value.
func (inv *Invocation) plainFlag(c byte) error {
	switch c {
	case 'I':
		inv.Mode = ModeAliases
	case 'i':
		inv.IgnoreDots = true
	case 't':
		inv.ReadHeaders = true
	case 'v':
		inv.Verbose++
	case 'n':
		return usageErrorf("option -n (do not expand aliases) is not supported")
	default: // c, G, m, U, x
		inv.Ignored = append(inv.Ignored, "-"+string(c))
	}
	return nil
}

// valueFlag applies a flag that takes a value, except -q.
func (inv *Invocation) valueFlag(c byte, val string) error {
	// No value may carry a line break or NUL, even one we ignore: each
	// could become a header or an SMTP command somewhere (-L is a syslog
	// tag elsewhere, -o a sendmail.cf line).
	if err := checkEnvelopeValue(val); err != nil {
		return usageErrorf("-%c value %v", c, err)
	}
	switch c {
	case 'B':
		switch b := strings.ToUpper(val); b {
		case "7BIT", "8BITMIME":
			inv.Body = b
		default:
			return usageErrorf("-B needs 7BIT or 8BITMIME, not %q", val)
		}
	case 'b':
		return inv.modeFlag(val)
	case 'C':
		if val == "" {
			return usageErrorf("option -C needs a value")
		}
		inv.ConfigPath = val
	case 'F':
		if err := checkEnvelopeValue(val); err != nil {
			return usageErrorf("-F value %v", err)
		}
		inv.FullName, inv.FullNameSet = val, true
	case 'f', 'r':
		if err := checkEnvelopeValue(val); err != nil {
			return usageErrorf("-%c value %v", c, err)
		}
		inv.Sender, inv.SenderSet = val, true
	case 'N':
		n, err := parseNotify(val)
		if err != nil {
			return err
		}
		inv.DSNNotify = n
	case 'R':
		switch r := strings.ToUpper(val); r {
		case "FULL", "HDRS":
			inv.DSNReturn = r
		default:
			return usageErrorf("-R needs full or hdrs, not %q", val)
		}
	case 'V':
		if err := checkEnvelopeValue(val); err != nil {
			return usageErrorf("-V value %v", err)
		}
		// RFC 3461 4.4: before xtext encoding an envid is printable
		// US-ASCII, spaces included; Postfix caps it at 100 characters.
		if val == "" || len(val) > 100 || strings.IndexFunc(val, func(r rune) bool { return r < ' ' || r > '~' }) >= 0 {
			return usageErrorf("-V envelope id %q must be 1 to 100 printable ASCII characters", val)
		}
		inv.EnvID = val
	case 'o':
		return inv.optionFlag(val)
	default: // A, e, h, L, O, p, X
		inv.Ignored = append(inv.Ignored, "-"+string(c)+" "+val)
	}
	return nil
}

// modeFlag applies -b<mode>.
func (inv *Invocation) modeFlag(val string) error {
	modes := map[string]Mode{
		"m": ModeSend, "p": ModeList, "s": ModeSMTP, "v": ModeVerify, "V": ModeVersion,
		"d": ModeDaemon, "l": ModeDaemon, "i": ModeAliases, "h": ModeIgnore, "H": ModeIgnore,
	}
	m, ok := modes[val]
	if !ok {
		return usageErrorf("unsupported option %s", quoteArg("-b"+val))
	}
	inv.Mode = m
	return nil
}

// optionFlag applies -o<option><value>: the sendmail.cf options that matter
// to a sender, and records the rest as ignored.
func (inv *Invocation) optionFlag(val string) error {
	if val == "" {
		return usageErrorf("option -o needs a value")
	}
	switch val[0] {
	case 'i':
		// Like Postfix, look at the letter only: sendmail reads -oi as
		// "i" with no value, which is true.
		inv.IgnoreDots = true
	case 'e':
		if len(val) != 2 || strings.IndexByte("pmqwe", val[1]) < 0 {
			return usageErrorf("unsupported option %s: the error mode is one of p, m, q, w and e", quoteArg("-o"+val))
		}
		inv.ErrorMode = val[1]
	case 'd':
		if len(val) != 2 || strings.IndexByte("ibqd", val[1]) < 0 {
			return usageErrorf("unsupported option %s: the delivery mode is one of i, b, q and d", quoteArg("-o"+val))
		}
		inv.Delivery = val[1]
		if inv.Delivery == 'd' {
			// sendmail's deferred mode queues without even looking up
			// hosts: for a relay that is the same as queueing.
			inv.Delivery = 'q'
		}
	default:
		inv.Ignored = append(inv.Ignored, "-o"+val)
	}
	return nil
}

// queueFlag applies -q with the rest of its word, which may be empty.
func (inv *Invocation) queueFlag(val string) error {
	switch {
	case val == "":
	case val[0] >= '0' && val[0] <= '9':
		d, err := parseQueueInterval(val)
		if err != nil {
			return err
		}
		inv.QueueInterval = d
	case val[0] == 'I' || val[0] == 'R':
		v := val[1:]
		if v == "" && val[0] == 'I' {
			return usageErrorf("-qI needs a queue id right after it, as in -qI01JD2K7Q")
		}
		if v == "" {
			return usageErrorf("-qR needs a site name right after it, as in -qRexample.com")
		}
		if err := checkEnvelopeValue(v); err != nil {
			return usageErrorf("-q%c value %v", val[0], err)
		}
		if val[0] == 'I' {
			inv.QueueID = v
		} else {
			inv.QueueSite = v
		}
	default:
		return usageErrorf("unsupported option %s", quoteArg("-q"+val))
	}
	// -bd -q30m is the classic daemon command line: the interval belongs
	// to the daemon, which stays the mode.
	if inv.Mode != ModeDaemon {
		inv.Mode = ModeQueue
	}
	return nil
}

// parseQueueInterval parses a sendmail time such as "30m", "1h30m" or "15"
// (minutes, as sendmail's -q assumes), with units s, m, h, d and w.
func parseQueueInterval(s string) (time.Duration, error) {
	bad := func() error {
		return usageErrorf("bad queue interval %s: write it like -q30m, -q1h or -q1h30m", quoteArg("-q"+s))
	}
	const limit = 366 * 24 * time.Hour
	var total time.Duration
	for rest := s; rest != ""; {
		n := 0
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 0 || n > 6 {
			return 0, bad()
		}
		num, _ := strconv.Atoi(rest[:n])
		unit := time.Minute
		if n < len(rest) {
			switch rest[n] {
			case 's':
				unit = time.Second
			case 'm':
				unit = time.Minute
			case 'h':
				unit = time.Hour
			case 'd':
				unit = 24 * time.Hour
			case 'w':
				unit = 7 * 24 * time.Hour
			default:
				return 0, bad()
			}
			n++
		}
		if time.Duration(num) > limit/unit {
			return 0, usageErrorf("queue interval %s is longer than a year", quoteArg("-q"+s))
		}
		total += time.Duration(num) * unit
		if total > limit {
			return 0, usageErrorf("queue interval %s is longer than a year", quoteArg("-q"+s))
		}
		rest = rest[n:]
	}
	return total, nil
}

// parseNotify parses -N: "never", or a comma-separated list of success,
// delay and failure (RFC 3461 4.1), in any case.
func parseNotify(val string) ([]string, error) {
	var out []string
	for _, w := range strings.Split(val, ",") {
		w = strings.ToUpper(strings.TrimSpace(w))
		switch w {
		case "NEVER", "SUCCESS", "DELAY", "FAILURE":
		default:
			return nil, usageErrorf("-N needs never or a list of success, delay and failure, not %q", val)
		}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	if slices.Contains(out, "NEVER") && len(out) > 1 {
		return nil, usageErrorf("-N never cannot be combined with other values (%q)", val)
	}
	return out, nil
}

// check looks for options that contradict each other or the recipients,
// with Postfix's wording where Postfix has a message.
func (inv *Invocation) check() error {
	switch inv.Mode {
	case ModeHelp, ModeIgnore:
		// --help always helps; -bh and -bH do nothing, as with Postfix.
		return nil
	}
	if inv.JSON && inv.Mode != ModeList {
		return usageErrorf("--json can be used only to list the queue (mailq, -bp)")
	}
	if (inv.Mode == ModeDelete || inv.Mode == ModeRequeue) && len(inv.Recipients) == 0 {
		return usageErrorf("--%s needs one or more queue ids, or ALL", inv.Mode)
	}
	if inv.ReadHeaders && inv.Mode != ModeSend {
		return usageErrorf("-t can be used only in delivery mode")
	}
	if (inv.QueueID != "" || inv.QueueSite != "") && inv.Mode != ModeQueue {
		return usageErrorf("-qI and -qR can be used only to run the queue")
	}
	if inv.QueueInterval != 0 && inv.Mode != ModeQueue && inv.Mode != ModeDaemon {
		return usageErrorf("-q with an interval can be used only to run the queue or with -bd")
	}
	if inv.Mode == ModeVerify && inv.DSNNotify != nil {
		return usageErrorf("-N option cannot be used with -bv")
	}
	noRecipients := map[Mode]string{
		ModeList:    "display queue mode",
		ModeSMTP:    "stand-alone mode",
		ModeVersion: "version mode",
		ModeDaemon:  "daemon mode",
		ModeAliases: "alias initialization mode",
		ModeQueue:   "flush queue mode",
		ModeCheck:   "check mode",
	}
	if what, ok := noRecipients[inv.Mode]; ok && len(inv.Recipients) > 0 {
		return usageErrorf("%s requires no recipient (got %q)", what, inv.Recipients[0])
	}
	if len(inv.Recipients) == 0 {
		switch {
		case inv.Mode == ModeVerify:
			return usageErrorf("-bv needs at least one address")
		case inv.Mode == ModeSend && !inv.ReadHeaders:
			return usageErrorf("no recipients: give them as arguments, or use -t to read To, Cc and Bcc")
		}
	}
	return nil
}

// checkEnvelopeValue refuses CR, LF and NUL, which could end an SMTP
// command or a header line early (SMTP command injection). The error reads
// after the value's name: "-f value contains a line break".
func checkEnvelopeValue(s string) error {
	switch {
	case strings.ContainsAny(s, "\r\n"):
		return fmt.Errorf("contains a line break")
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("contains a NUL byte")
	}
	return nil
}

// quoteArg returns an option as typed, or quoted when it holds anything
// but printable ASCII, so that an error message stays on one line.
func quoteArg(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' || s[i] == '"' {
			return strconv.Quote(s)
		}
	}
	return s
}

func usageErrorf(format string, args ...any) error {
	return sysexits.Errorf(sysexits.Usage, format, args...)
}
