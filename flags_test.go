package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"relaymail/internal/sysexits"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		prog    string // "" means "sendmail"
		args    []string
		want    Invocation
		wantErr string // fragment of the message; the code is always 64
	}{
		// Real callers, as CALLERS.md records them.
		{
			name: "PHP mail()",
			args: []string{"-t", "-i"},
			want: Invocation{ReadHeaders: true, IgnoreDots: true, ErrorMode: 'p'},
		},
		{
			name: "PHP mail() with -f glued in the fifth argument",
			args: []string{"-t", "-i", "-fbounce@example.com"},
			want: Invocation{ReadHeaders: true, IgnoreDots: true, ErrorMode: 'p', Sender: "bounce@example.com", SenderSet: true},
		},
		{
			name: "PHP mail() with -f and the address apart",
			args: []string{"-t", "-i", "-f", "bounce@example.com"},
			want: Invocation{ReadHeaders: true, IgnoreDots: true, ErrorMode: 'p', Sender: "bounce@example.com", SenderSet: true},
		},
		{
			name: "PHPMailer isSendmail",
			args: []string{"-oi", "-fsender@x", "-t"},
			want: Invocation{ReadHeaders: true, IgnoreDots: true, ErrorMode: 'p', Sender: "sender@x", SenderSet: true},
		},
		{
			name: "PHPMailer without a shell-safe sender",
			args: []string{"-oi", "-t"},
			want: Invocation{ReadHeaders: true, IgnoreDots: true, ErrorMode: 'p'},
		},
		{
			name: "Debian cron",
			args: []string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"},
			want: Invocation{FullName: "CronDaemon", FullNameSet: true, IgnoreDots: true, Body: "8BITMIME", ErrorMode: 'm',
				Recipients: []string{"root"}},
		},
		{
			name: "Debian cron with a MAILTO list in one word",
			args: []string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "ops@example.com,dev@example.com"},
			want: Invocation{FullName: "CronDaemon", FullNameSet: true, IgnoreDots: true, Body: "8BITMIME", ErrorMode: 'm',
				Recipients: []string{"ops@example.com,dev@example.com"}},
		},
		{
			name: "cronie",
			args: []string{"-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root"},
			want: Invocation{FullName: "CronDaemon", FullNameSet: true, IgnoreDots: true, Delivery: 'i', ErrorMode: 'm',
				ReadHeaders: true, Sender: "root", SenderSet: true},
		},
		{
			name: "anacron",
			args: []string{"-FAnacron", "-odi", "root"},
			want: Invocation{FullName: "Anacron", FullNameSet: true, Delivery: 'i', ErrorMode: 'p', Recipients: []string{"root"}},
		},
		{
			name: "bsd-mailx",
			args: []string{"-i", "-t"},
			want: Invocation{IgnoreDots: true, ReadHeaders: true, ErrorMode: 'p'},
		},
		{
			name: "bsd-mailx with -r",
			args: []string{"-i", "-t", "-f", "from@example.com"},
			want: Invocation{IgnoreDots: true, ReadHeaders: true, ErrorMode: 'p', Sender: "from@example.com", SenderSet: true},
		},
		{
			name: "older mailx with -- before the recipient",
			args: []string{"-i", "--", "rcpt@example.com"},
			want: Invocation{IgnoreDots: true, ErrorMode: 'p', Recipients: []string{"rcpt@example.com"}},
		},
		{
			name: "s-nail",
			args: []string{"-i", "-F", "Jo Bloggs", "-f", "jo@example.com", "--", "a@x", "b@y"},
			want: Invocation{IgnoreDots: true, FullName: "Jo Bloggs", FullNameSet: true, Sender: "jo@example.com", SenderSet: true,
				ErrorMode: 'p', Recipients: []string{"a@x", "b@y"}},
		},
		{
			name: "GNU mailutils",
			args: []string{"-oi", "-f", "user@host", "-t"},
			want: Invocation{IgnoreDots: true, Sender: "user@host", SenderSet: true, ReadHeaders: true, ErrorMode: 'p'},
		},
		{
			name: "mutt with every option",
			args: []string{"-oem", "-oi", "-f", "me@x", "-N", "failure,delay", "-R", "hdrs", "-B8BITMIME", "--", "a@x", "-b@y"},
			want: Invocation{ErrorMode: 'm', IgnoreDots: true, Sender: "me@x", SenderSet: true,
				DSNNotify: []string{"FAILURE", "DELAY"}, DSNReturn: "HDRS", Body: "8BITMIME", Recipients: []string{"a@x", "-b@y"}},
		},
		{
			name: "git send-email",
			args: []string{"-i", "-f", "me@x", "a@x", "b@y"},
			want: Invocation{IgnoreDots: true, Sender: "me@x", SenderSet: true, ErrorMode: 'p', Recipients: []string{"a@x", "b@y"}},
		},
		{
			name: "unattended-upgrades",
			args: []string{"-oi", "-t"},
			want: Invocation{IgnoreDots: true, ReadHeaders: true, ErrorMode: 'p'},
		},
		{
			name: "logwatch without -i",
			args: []string{"-t"},
			want: Invocation{ReadHeaders: true, ErrorMode: 'p'},
		},
		{
			name: "mdadm and sudo",
			args: []string{"-t"},
			want: Invocation{ReadHeaders: true, ErrorMode: 'p'},
		},
		{
			name: "fail2ban",
			args: []string{"-f", "root@host", "root@localhost"},
			want: Invocation{Sender: "root@host", SenderSet: true, ErrorMode: 'p', Recipients: []string{"root@localhost"}},
		},
		{
			name: "Symfony Mailer",
			args: []string{"-bs"},
			want: Invocation{Mode: ModeSMTP, ErrorMode: 'p'},
		},
		{
			name: "Laravel",
			args: []string{"-bs", "-i"},
			want: Invocation{Mode: ModeSMTP, IgnoreDots: true, ErrorMode: 'p'},
		},
		{
			name: "Symfony in -t mode with known recipients",
			args: []string{"-i", "-f'bounce@example.com'", "--", "'rcpt@example.com'"},
			want: Invocation{IgnoreDots: true, Sender: "'bounce@example.com'", SenderSet: true, ErrorMode: 'p',
				Recipients: []string{"'rcpt@example.com'"}},
		},

		// Option syntax.
		{
			name: "boolean flags clustered",
			args: []string{"-tiv"},
			want: Invocation{ReadHeaders: true, IgnoreDots: true, Verbose: 1, ErrorMode: 'p'},
		},
		{
			name: "cluster ending in a flag that takes the next argument",
			args: []string{"-tif", "me@x"},
			want: Invocation{ReadHeaders: true, IgnoreDots: true, Sender: "me@x", SenderSet: true, ErrorMode: 'p'},
		},
		{
			name: "value flag takes the rest of its word",
			args: []string{"-it", "-fbob", "-vvv"},
			want: Invocation{ReadHeaders: true, IgnoreDots: true, Sender: "bob", SenderSet: true, Verbose: 3, ErrorMode: 'p'},
		},
		{
			name: "value flag takes the next argument even with a dash",
			args: []string{"-t", "-f", "-oi"},
			want: Invocation{ReadHeaders: true, Sender: "-oi", SenderSet: true, ErrorMode: 'p'},
		},
		{
			name: "-r is -f",
			args: []string{"-r", "owner@example.com", "-t"},
			want: Invocation{ReadHeaders: true, Sender: "owner@example.com", SenderSet: true, ErrorMode: 'p'},
		},
		{
			name: "null sender",
			args: []string{"-f", "<>", "-t"},
			want: Invocation{ReadHeaders: true, Sender: "<>", SenderSet: true, ErrorMode: 'p'},
		},
		{
			name: "empty -f is set",
			args: []string{"-f", "", "-t"},
			want: Invocation{ReadHeaders: true, Sender: "", SenderSet: true, ErrorMode: 'p'},
		},
		{
			name: "-B 7BIT apart and in lowercase",
			args: []string{"-B", "7bit", "a@x"},
			want: Invocation{Body: "7BIT", ErrorMode: 'p', Recipients: []string{"a@x"}},
		},
		{
			name: "DSN options",
			args: []string{"-N", "Success, DELAY,failure,delay", "-R", "FULL", "-V", "batch 42/7", "a@x"},
			want: Invocation{DSNNotify: []string{"SUCCESS", "DELAY", "FAILURE"}, DSNReturn: "FULL", EnvID: "batch 42/7",
				ErrorMode: 'p', Recipients: []string{"a@x"}},
		},
		{
			name: "-N never",
			args: []string{"-Nnever", "a@x"},
			want: Invocation{DSNNotify: []string{"NEVER"}, ErrorMode: 'p', Recipients: []string{"a@x"}},
		},
		{
			name: "error and delivery modes, deferred is queued",
			args: []string{"-oeq", "-odd", "-C", "/etc/relaymail/test.conf", "a@x"},
			want: Invocation{ErrorMode: 'q', Delivery: 'q', ConfigPath: "/etc/relaymail/test.conf",
				Recipients: []string{"a@x"}},
		},
		{
			name: "background delivery",
			args: []string{"-odb", "-oew", "-t"},
			want: Invocation{Delivery: 'b', ErrorMode: 'w', ReadHeaders: true},
		},
		{
			name: "-- ends the options",
			args: []string{"--", "-t", "--version"},
			want: Invocation{ErrorMode: 'p', Recipients: []string{"-t", "--version"}},
		},
		{
			name: "after --, a recipient may start with a dash",
			args: []string{"-i", "--", "-", "-t", "a@x"},
			want: Invocation{IgnoreDots: true, ErrorMode: 'p', Recipients: []string{"-", "-t", "a@x"}},
		},

		// Modes.
		{
			name: "mailq",
			prog: "mailq",
			want: Invocation{Mode: ModeList, ErrorMode: 'p'},
		},
		{
			name: "mailq by its path, verbose",
			prog: "/usr/bin/mailq",
			args: []string{"-v"},
			want: Invocation{Mode: ModeList, Verbose: 1, ErrorMode: 'p'},
		},
		{
			name: "newaliases",
			prog: "newaliases",
			want: Invocation{Mode: ModeAliases, ErrorMode: 'p'},
		},
		{
			name: "relaymail by its own name sends",
			prog: "relaymail",
			args: []string{"a@x"},
			want: Invocation{ErrorMode: 'p', Recipients: []string{"a@x"}},
		},
		{
			name: "-bp",
			args: []string{"-bp"},
			want: Invocation{Mode: ModeList, ErrorMode: 'p'},
		},
		{
			name: "-bi",
			args: []string{"-bi"},
			want: Invocation{Mode: ModeAliases, ErrorMode: 'p'},
		},
		{
			name: "-I",
			args: []string{"-I"},
			want: Invocation{Mode: ModeAliases, ErrorMode: 'p'},
		},
		{
			name: "-bm",
			args: []string{"-bm", "a@x"},
			want: Invocation{Mode: ModeSend, ErrorMode: 'p', Recipients: []string{"a@x"}},
		},
		{
			name: "-bv",
			args: []string{"-bv", "root", "a@x"},
			want: Invocation{Mode: ModeVerify, ErrorMode: 'p', Recipients: []string{"root", "a@x"}},
		},
		{
			name: "--version",
			args: []string{"--version"},
			want: Invocation{Mode: ModeVersion, ErrorMode: 'p'},
		},
		{
			name: "-bV",
			args: []string{"-bV"},
			want: Invocation{Mode: ModeVersion, ErrorMode: 'p'},
		},
		{
			name: "--help",
			args: []string{"--help"},
			want: Invocation{Mode: ModeHelp, ErrorMode: 'p'},
		},
		{
			name: "-bd",
			args: []string{"-bd"},
			want: Invocation{Mode: ModeDaemon, ErrorMode: 'p'},
		},
		{
			name: "-bl",
			args: []string{"-bl"},
			want: Invocation{Mode: ModeDaemon, ErrorMode: 'p'},
		},
		{
			name: "classic daemon command line keeps the interval",
			args: []string{"-bd", "-q30m"},
			want: Invocation{Mode: ModeDaemon, QueueInterval: 30 * time.Minute, ErrorMode: 'p'},
		},
		{
			name: "-bh does nothing, as with Postfix",
			args: []string{"-bh"},
			want: Invocation{Mode: ModeIgnore, ErrorMode: 'p'},
		},
		{
			name: "-bH does nothing, as with Postfix",
			args: []string{"-bH"},
			want: Invocation{Mode: ModeIgnore, ErrorMode: 'p'},
		},
		{
			name: "-q runs the queue once",
			args: []string{"-q"},
			want: Invocation{Mode: ModeQueue, ErrorMode: 'p'},
		},
		{
			name: "-q15m",
			args: []string{"-q15m"},
			want: Invocation{Mode: ModeQueue, QueueInterval: 15 * time.Minute, ErrorMode: 'p'},
		},
		{
			name: "-q with combined units",
			args: []string{"-q1h30m"},
			want: Invocation{Mode: ModeQueue, QueueInterval: 90 * time.Minute, ErrorMode: 'p'},
		},
		{
			name: "-q with seconds, days and weeks",
			args: []string{"-q1w2d3h4m5s"},
			want: Invocation{Mode: ModeQueue, QueueInterval: 9*24*time.Hour + 3*time.Hour + 4*time.Minute + 5*time.Second, ErrorMode: 'p'},
		},
		{
			name: "-q with a bare number is minutes, as sendmail reads it",
			args: []string{"-q5"},
			want: Invocation{Mode: ModeQueue, QueueInterval: 5 * time.Minute, ErrorMode: 'p'},
		},
		{
			name: "-q at the end of a cluster takes no argument",
			args: []string{"-vq"},
			want: Invocation{Mode: ModeQueue, Verbose: 1, ErrorMode: 'p'},
		},
		{
			name: "-qI",
			args: []string{"-qIabc"},
			want: Invocation{Mode: ModeQueue, QueueID: "abc", ErrorMode: 'p'},
		},
		{
			name: "-qR",
			args: []string{"-qRexample.com"},
			want: Invocation{Mode: ModeQueue, QueueSite: "example.com", ErrorMode: 'p'},
		},

		// Obsolete and ignored flags.
		{
			name: "obsolete flags without a value",
			args: []string{"-G", "-U", "-m", "-c", "-x", "-t"},
			want: Invocation{ReadHeaders: true, ErrorMode: 'p', Ignored: []string{"-G", "-U", "-m", "-c", "-x"}},
		},
		{
			name: "obsolete flags clustered",
			args: []string{"-GUtim"},
			want: Invocation{ReadHeaders: true, IgnoreDots: true, ErrorMode: 'p', Ignored: []string{"-G", "-U", "-m"}},
		},
		{
			name: "ignored flags with a value",
			args: []string{"-h", "30", "-L", "cronlog", "-X/tmp/traffic.log", "-O", "DeliveryMode=b", "-e", "m", "-pESMTP", "-Am", "-t"},
			want: Invocation{ReadHeaders: true, ErrorMode: 'p',
				Ignored: []string{"-h 30", "-L cronlog", "-X /tmp/traffic.log", "-O DeliveryMode=b", "-e m", "-p ESMTP", "-A m"}},
		},
		{
			name: "ignored -o options",
			args: []string{"-om", "-o7", "-o8", "-oA/etc/aliases", "-oQ/var/spool/mqueue", "-o", "L9", "-t"},
			want: Invocation{ReadHeaders: true, ErrorMode: 'p',
				Ignored: []string{"-om", "-o7", "-o8", "-oA/etc/aliases", "-oQ/var/spool/mqueue", "-oL9"}},
		},

		// Errors.
		{name: "unknown flag", args: []string{"-Z", "a@x"}, wantErr: "unknown option -Z"},
		{name: "unknown flag in a cluster", args: []string{"-tZ"}, wantErr: "unknown option -Z"},
		{name: "unknown long option", args: []string{"--verbose"}, wantErr: "unknown option --verbose"},
		{name: "unprintable flag is quoted", args: []string{"-\x01"}, wantErr: `unknown option "-\x01"`},
		{name: "mail's -s", args: []string{"-s", "hello", "a@x"}, wantErr: "unknown option -s: sendmail takes no subject"},
		{name: "-n is refused as Postfix does", args: []string{"-n", "a@x"}, wantErr: "option -n (do not expand aliases) is not supported"},
		{name: "unknown -b mode", args: []string{"-bz"}, wantErr: "unsupported option -bz"},
		{name: "sendmail's address test mode", args: []string{"-bt"}, wantErr: "unsupported option -bt"},
		{name: "-b with more than a letter", args: []string{"-bpx"}, wantErr: "unsupported option -bpx"},
		{name: "missing value", args: []string{"-t", "-f"}, wantErr: "option -f needs a value"},
		{name: "missing value at the end of a cluster", args: []string{"-tiF"}, wantErr: "option -F needs a value"},
		{name: "empty -C", args: []string{"-C", "", "a@x"}, wantErr: "option -C needs a value"},
		{name: "empty -o", args: []string{"-o", "", "a@x"}, wantErr: "option -o needs a value"},
		{name: "bad -B", args: []string{"-B", "8BIT", "a@x"}, wantErr: `-B needs 7BIT or 8BITMIME, not "8BIT"`},
		{name: "bad -N", args: []string{"-N", "failure,bounce", "a@x"}, wantErr: "-N needs never or a list of success, delay and failure"},
		{name: "empty -N item", args: []string{"-N", "failure,,delay", "a@x"}, wantErr: "-N needs never"},
		{name: "-N never with others", args: []string{"-N", "never,failure", "a@x"}, wantErr: "-N never cannot be combined"},
		{name: "bad -R", args: []string{"-R", "headers", "a@x"}, wantErr: `-R needs full or hdrs, not "headers"`},
		{name: "-V with a tab", args: []string{"-V", "my\tid", "a@x"}, wantErr: `-V envelope id "my\tid" must be 1 to 100 printable ASCII`},
		{name: "empty -V", args: []string{"-V", "", "a@x"}, wantErr: `-V envelope id "" must be 1 to 100`},
		{name: "-V too long", args: []string{"-V", strings.Repeat("x", 101), "a@x"}, wantErr: "must be 1 to 100 printable ASCII"},
		{name: "-V not ASCII", args: []string{"-V", "idé", "a@x"}, wantErr: "must be 1 to 100 printable ASCII"},
		{name: "bad error mode", args: []string{"-oex", "a@x"}, wantErr: "unsupported option -oex: the error mode is one of p, m, q, w and e"},
		{name: "bad delivery mode", args: []string{"-odx", "a@x"}, wantErr: "unsupported option -odx: the delivery mode is one of i, b, q and d"},
		{name: "CR in -f", args: []string{"-f", "a@x\rRCPT TO:<b@y>", "-t"}, wantErr: "-f value contains a line break"},
		{name: "LF in glued -r", args: []string{"-ra@x\nRCPT TO:<b@y>", "-t"}, wantErr: "-r value contains a line break"},
		{name: "NUL in -f", args: []string{"-fa@x\x00", "-t"}, wantErr: "-f value contains a NUL byte"},
		{name: "LF in -F", args: []string{"-F", "Cron\nBcc: victim@example.com", "-t"}, wantErr: "-F value contains a line break"},
		{name: "CR in -V", args: []string{"-V", "id\r", "a@x"}, wantErr: "-V value contains a line break"},
		{name: "LF in -N", args: []string{"-N", "success\nfailure", "a@x"}, wantErr: "-N value contains a line break"},
		{name: "CR in -R", args: []string{"-R", "full\r", "a@x"}, wantErr: "-R value contains a line break"},
		{name: "the first recipient ends the options", args: []string{"-i", "root", "-t", "-f", "x"}, wantErr: `recipient "-t" starts with -: options go before the recipients`},
		{name: "a lone dash before --", args: []string{"-i", "-", "a@x"}, wantErr: `recipient "-" starts with -`},
		{name: "LF in ignored -L", args: []string{"-L", "tag\nx", "a@x"}, wantErr: "-L value contains a line break"},
		{name: "NUL in ignored -O", args: []string{"-OQueueDirectory=/x\x00", "a@x"}, wantErr: "-O value contains a NUL byte"},
		{name: "LF in -o", args: []string{"-oX\nY", "a@x"}, wantErr: "-o value contains a line break"},
		{name: "LF in a recipient", args: []string{"-i", "a@x\nDATA"}, wantErr: `recipient "a@x\nDATA" contains a line break`},
		{name: "LF in a recipient after --", args: []string{"--", "ok@x", "b@y\n"}, wantErr: "contains a line break"},
		{name: "recipients with -bp", args: []string{"-bp", "a@x"}, wantErr: "display queue mode requires no recipient"},
		{name: "recipients with mailq", prog: "mailq", args: []string{"a@x"}, wantErr: "display queue mode requires no recipient"},
		{name: "recipients with -bi", args: []string{"-bi", "a@x"}, wantErr: "alias initialization mode requires no recipient"},
		{name: "recipients with -bd", args: []string{"-bd", "a@x"}, wantErr: "daemon mode requires no recipient"},
		{name: "recipients with -bs", args: []string{"-bs", "a@x"}, wantErr: "stand-alone mode requires no recipient"},
		{name: "recipients with -q", args: []string{"-q", "a@x"}, wantErr: "flush queue mode requires no recipient"},
		{name: "-q never takes the next argument", args: []string{"-q", "15m"}, wantErr: "flush queue mode requires no recipient"},
		{name: "recipients with --version", args: []string{"--version", "a@x"}, wantErr: "version mode requires no recipient"},
		{name: "-t with -bp", args: []string{"-bp", "-t"}, wantErr: "-t can be used only in delivery mode"},
		{name: "-t with -bs", args: []string{"-t", "-bs"}, wantErr: "-t can be used only in delivery mode"},
		{name: "-N with -bv", args: []string{"-bv", "-N", "never", "a@x"}, wantErr: "-N option cannot be used with -bv"},
		{name: "-bv without an address", args: []string{"-bv"}, wantErr: "-bv needs at least one address"},
		{name: "no recipients and no -t", args: []string{"-i", "-f", "me@x"}, wantErr: "no recipients: give them as arguments, or use -t"},
		{name: "no arguments at all", args: nil, wantErr: "no recipients"},
		{name: "unsupported -q form", args: []string{"-qS"}, wantErr: "unsupported option -qS"},
		{name: "-qf is not implemented, as with Postfix", args: []string{"-qf"}, wantErr: "unsupported option -qf"},
		{name: "empty -qI", args: []string{"-qI"}, wantErr: "-qI needs a queue id"},
		{name: "empty -qR", args: []string{"-qR"}, wantErr: "-qR needs a site name"},
		{name: "bad queue unit", args: []string{"-q5x"}, wantErr: "bad queue interval -q5x"},
		{name: "queue interval overflow", args: []string{"-q999999w"}, wantErr: "longer than a year"},
		{name: "queue interval with too many digits", args: []string{"-q99999999999999999999"}, wantErr: "bad queue interval"},
		{name: "-qI with -bp", args: []string{"-qIabc", "-bp"}, wantErr: "-qI and -qR can be used only to run the queue"},
		{name: "interval with -bp", args: []string{"-q5m", "-bp"}, wantErr: "-q with an interval can be used only to run the queue or with -bd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog := tt.prog
			if prog == "" {
				prog = "sendmail"
			}
			got, err := parseArgs(prog, tt.args)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("parseArgs(%q, %q) = %+v, want error %q", prog, tt.args, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("parseArgs(%q, %q) error %q, want %q", prog, tt.args, err, tt.wantErr)
				}
				if code := sysexits.CodeOf(err); code != sysexits.Usage {
					t.Errorf("parseArgs(%q, %q) exit code %v, want %v", prog, tt.args, code, sysexits.Usage)
				}
				if strings.ContainsAny(err.Error(), "\r\n") {
					t.Errorf("parseArgs(%q, %q) error is not one line: %q", prog, tt.args, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseArgs(%q, %q) error: %v", prog, tt.args, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseArgs(%q, %q) =\n%+v\nwant\n%+v", prog, tt.args, got, tt.want)
			}
		})
	}
}

// TestParseArgsKeepsArgs checks that the recipients do not alias the
// caller's slice.
func TestParseArgsKeepsArgs(t *testing.T) {
	args := []string{"-i", "a@x", "b@y"}
	inv, err := parseArgs("sendmail", args)
	if err != nil {
		t.Fatal(err)
	}
	inv.Recipients[0] = "changed"
	if args[1] != "a@x" {
		t.Errorf("parseArgs returned recipients sharing the argument slice")
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{ModeSend: "send", ModeQueue: "queue", ModeHelp: "help", Mode(99): "Mode(99)"} {
		if got := m.String(); got != want {
			t.Errorf("Mode(%d).String() = %q, want %q", int(m), got, want)
		}
	}
}

// FuzzParseArgs splits its input into arguments at NUL or space (so that
// the corpus reads like command lines, and values may still hold CR and
// LF) and checks that parseArgs never panics, that every error carries the
// usage exit code and is one line, and that nothing with a line break or
// NUL reaches the envelope.
func FuzzParseArgs(f *testing.F) {
	for _, seed := range []string{
		"-t -i", "-t -i -fbounce@example.com", "-oi -fsender@x -t", "-FCronDaemon -i -B8BITMIME -oem root",
		"-FCronDaemon -i -odi -oem -oi -t -f root", "-i -F\x00Jo Bloggs\x00-f\x00jo@x\x00--\x00a@x\x00b@y",
		"-oem -oi -f me@x -N failure,delay -R hdrs -B8BITMIME -- a@x -b@y", "-bs", "-q15m", "-qIabc", "-bd -q1h30m",
		"--version", "-bV", "-Z", "-f", "-f a\nb -t", "-bp root", "-h 30 -L x -O a=b -GUcmx -t", "-q -- x",
		"-V\x00id\r\x00a", "-N never,success a", "-tiv a", "-\x01", "--help",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		args := strings.FieldsFunc(input, func(r rune) bool { return r == 0 || r == ' ' })
		prog := "sendmail"
		if len(args) > 0 && (args[0] == "mailq" || args[0] == "newaliases") {
			prog, args = args[0], args[1:]
		}
		inv, err := parseArgs(prog, args)
		if err != nil {
			if code := sysexits.CodeOf(err); code != sysexits.Usage {
				t.Fatalf("parseArgs(%q) error %q has exit code %v, want %v", args, err, code, sysexits.Usage)
			}
			if strings.ContainsAny(err.Error(), "\r\n\x00") {
				t.Fatalf("parseArgs(%q) error is not one clean line: %q", args, err)
			}
			return
		}
		for _, v := range append([]string{inv.Sender, inv.FullName, inv.EnvID}, inv.Recipients...) {
			if strings.ContainsAny(v, "\r\n\x00") {
				t.Fatalf("parseArgs(%q) = %+v: %q reaches the envelope", args, inv, v)
			}
		}
		if inv.Mode < ModeSend || inv.Mode > ModeHelp {
			t.Fatalf("parseArgs(%q) mode %v", args, inv.Mode)
		}
		if inv.ReadHeaders && inv.Mode != ModeSend && inv.Mode != ModeHelp && inv.Mode != ModeIgnore {
			t.Fatalf("parseArgs(%q) = %+v: -t outside delivery mode", args, inv)
		}
	})
}
