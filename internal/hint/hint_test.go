package hint

import (
	"strings"
	"testing"
)

// TestCatalogue: each well-known reply gets its hint, one by one, and the
// hint names what to change.
func TestCatalogue(t *testing.T) {
	for _, tt := range []struct {
		name string
		s    Situation
		want string // a fragment of the hint
	}{
		{"Gmail wrong password", Situation{Stage: "AUTH", Code: 535, Enhanced: "5.7.8", Text: "Username and Password not accepted. For more information, go to https://support.google.com/mail/?p=BadCredentials", Host: "smtp.gmail.com"}, "Gmail refused the login: use an app password"},
		{"Gmail generic 535 by host", Situation{Stage: "AUTH", Code: 535, Text: "authentication failed", Host: "smtp.gmail.com"}, "Gmail refused the login"},
		{"Gmail app password required", Situation{Stage: "AUTH", Code: 534, Enhanced: "5.7.9", Text: "Application-specific password required."}, "Gmail wants an app password"},
		{"Microsoft SMTP AUTH disabled", Situation{Stage: "AUTH", Code: 535, Enhanced: "5.7.139", Text: "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.", Host: "smtp.office365.com"}, "Set-CASMailbox -SmtpClientAuthenticationDisabled $false"},
		{"Microsoft wrong password", Situation{Stage: "AUTH", Code: 535, Enhanced: "5.7.3", Text: "Authentication unsuccessful", Host: "smtp.office365.com"}, "Microsoft 365 refused the login"},
		{"any other 535", Situation{Stage: "AUTH", Code: 535, Text: "Incorrect authentication data", Host: "mail.example.com"}, "check username and the password in [smarthost]"},
		{"530 STARTTLS first with tls none", Situation{Stage: "MAIL", Code: 530, Enhanced: "5.7.0", Text: "Must issue a STARTTLS command first", TLS: "none"}, `tls = "starttls"`},
		{"530 login needed", Situation{Stage: "MAIL", Code: 530, Enhanced: "5.7.0", Text: "Authentication required", TLS: "starttls"}, "set username and a password source"},
		{"550 5.7.1 sender not allowed", Situation{Stage: "MAIL", Code: 550, Enhanced: "5.7.1", Text: "Sender address rejected: not owned by user relay@example.com"}, "[rewrite] sender"},
		{"553 5.7.1 at MAIL", Situation{Stage: "MAIL", Code: 553, Enhanced: "5.7.1", Text: "<www-data@host.local>: Sender address rejected"}, "[rewrite] sender"},
		{"554 5.7.1 Microsoft SendAsDenied", Situation{Stage: "DATA", Code: 554, Enhanced: "5.2.0", Text: "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied"}, "[rewrite] sender"},
		{"SES unverified", Situation{Stage: "DATA", Code: 554, Text: "Message rejected: Email address is not verified. The following identities failed the check"}, "[rewrite] sender"},
		{"552 too large with SIZE", Situation{Stage: "DATA", Code: 552, Enhanced: "5.3.4", Text: "Message size exceeds fixed maximum message size", Size: 35882577}, "SIZE 35882577, 34.2MB"},
		{"552 too large without SIZE", Situation{Stage: "MAIL", Code: 552, Enhanced: "5.3.4", Text: "Message too big"}, "set max_message_size"},
		{"relay denied", Situation{Stage: "RCPT", Code: 554, Enhanced: "5.7.1", Text: "<a@example.net>: Relay access denied"}, "does not relay for this client"},
		{"Gmail daily quota", Situation{Stage: "DATA", Code: 550, Enhanced: "5.4.5", Text: "Daily user sending limit exceeded."}, "set daily_limit"},
		{"SES throttling", Situation{Stage: "MAIL", Code: 454, Enhanced: "4.7.0", Text: "Throttling failure: Maximum sending rate exceeded."}, "set rate"},
		{"421 too many connections", Situation{Stage: "MAIL", Code: 421, Enhanced: "4.7.0", Text: "Too many concurrent SMTP connections"}, "set rate"},
	} {
		got := Reply(tt.s)
		if !strings.Contains(got, tt.want) {
			t.Errorf("%s: hint %q, want it to contain %q", tt.name, got, tt.want)
		}
	}
}

// TestUnknown: replies without a known fix get no hint.
func TestUnknown(t *testing.T) {
	for _, s := range []Situation{
		{Stage: "RCPT", Code: 550, Enhanced: "5.1.1", Text: "User unknown"},
		{Stage: "RCPT", Code: 450, Enhanced: "4.2.0", Text: "Greylisted"},
		{Stage: "DATA", Code: 451, Enhanced: "4.3.0", Text: "Temporary lookup failure"},
		{Stage: "RCPT", Code: 552, Enhanced: "5.2.2", Text: "Mailbox quota exceeded"},
		{Stage: "RCPT", Code: 450, Enhanced: "4.7.1", Text: "<a@example.net>: Recipient address rejected: Access denied"},
	} {
		if got := Reply(s); got != "" {
			t.Errorf("Reply(%+v) = %q, want none", s, got)
		}
	}
}

func TestNetwork(t *testing.T) {
	for _, tt := range []struct {
		got, want string
	}{
		{Network("connect", "smtp.example.com:587", false, false, true), "does not resolve"},
		{Network("connect", "127.0.0.1:2525", true, false, false), "nothing accepts connections on 127.0.0.1:2525"},
		{Network("connect", "smtp.example.com:25", false, true, false), "a firewall may block the port"},
		{Network("DATA", "smtp.example.com:587", false, true, false), "stopped answering during DATA"},
	} {
		if !strings.Contains(tt.got, tt.want) {
			t.Errorf("hint %q, want %q in it", tt.got, tt.want)
		}
	}
}

func TestFromResult(t *testing.T) {
	s := FromResult(550, "550 5.7.1 Sender address rejected: not owned by user", "smtp.example.com", "starttls")
	if s.Code != 550 || s.Enhanced != "5.7.1" || s.Text != "Sender address rejected: not owned by user" {
		t.Errorf("FromResult = %+v", s)
	}
	if !strings.Contains(Reply(s), "[rewrite] sender") {
		t.Errorf("no sender hint for %+v", s)
	}
	if s := FromResult(554, "554 Relay access denied", "", ""); s.Enhanced != "" || s.Text != "Relay access denied" {
		t.Errorf("FromResult without an enhanced code = %+v", s)
	}
	if s := FromResult(0, "cannot connect: connection refused", "", ""); s.Text != "cannot connect: connection refused" {
		t.Errorf("FromResult without a reply = %+v", s)
	}
}
