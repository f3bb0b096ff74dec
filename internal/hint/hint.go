// Package hint is the catalogue of what to do when a smarthost says no:
// each well-known reply or situation maps to one line for the person who
// configures relaymail. The line goes after the error on stderr, in
// sendmail --check, in the log and in bounces.
//
// # Rules
//
//   - A hint names the setting to change, in the config's words
//     ([smarthost] password_file, tls = "starttls", [rewrite] sender), and
//     the value to look for where that helps (the SIZE the server took).
//   - Provider-specific hints (Gmail, Microsoft 365) are chosen by the
//     reply's text, or by the smarthost's name when the text is generic.
//   - No hint is better than a wrong one: an unknown reply gets "".
package hint

import (
	"fmt"
	"strings"

	"relaymail/internal/limits"
)

// Situation is what failed.
type Situation struct {
	// Stage is where: "connect", "TLS", "EHLO", "STARTTLS", "AUTH",
	// "MAIL", "RCPT", "DATA".
	Stage    string
	Code     int    // the reply code; 0 without a reply
	Enhanced string // "5.7.8", or ""
	Text     string // the reply's text
	Host     string // the smarthost's host name
	TLS      string // the config's tls: "starttls", "tls" or "none"
	Size     int64  // the SIZE limit the server advertised; 0 when none
}

// Reply returns the hint for s, or "".
//
// FromResult makes a Situation of a recipient's recorded reply.
func Reply(s Situation) string {
	t := strings.ToLower(s.Text)
	host := strings.ToLower(s.Host)
	google := strings.Contains(host, "gmail") || strings.Contains(host, "google") || strings.Contains(t, "support.google.com")
	microsoft := strings.Contains(host, "office365") || strings.Contains(host, "outlook") || strings.Contains(host, "microsoft")
	switch {
	case strings.Contains(t, "smtpclientauthentication is disabled") || s.Enhanced == "5.7.139" && strings.Contains(t, "disabled"):
		return "Microsoft 365 has SMTP AUTH turned off for this mailbox: an admin must enable Authenticated SMTP for it (Set-CASMailbox -SmtpClientAuthenticationDisabled $false), or use auth = \"xoauth2\" with a token from password_command"
	case s.Code == 534 && (s.Enhanced == "5.7.9" || strings.Contains(t, "application-specific password")):
		return "Gmail wants an app password, not the account's: create one (Google Account > Security > 2-Step Verification > App passwords) and put it in password_file, or use auth = \"xoauth2\""
	case (s.Code == 535 || s.Code == 534) && (google || strings.Contains(t, "username and password not accepted") || strings.Contains(t, "badcredentials")):
		return "Gmail refused the login: use an app password (Google Account > Security > 2-Step Verification > App passwords) in password_file, or auth = \"xoauth2\" with password_command; the account's own password does not work over SMTP"
	case (s.Code == 535 || s.Code == 534) && (microsoft || strings.Contains(t, "5.7.3") || strings.Contains(t, "authentication unsuccessful")):
		return "Microsoft 365 refused the login: check username (the full address) and the password; with security defaults or MFA on, use an app password or auth = \"xoauth2\" with password_command"
	case s.Code == 535 || s.Code == 534 || s.Stage == "AUTH" && s.Code/100 == 5:
		return "check username and the password in [smarthost] (password, password_file or password_command); many providers want an app password or OAuth2 (auth = \"xoauth2\")"
	case s.Code == 530 && (s.TLS == "none" || strings.Contains(t, "starttls")):
		return "the smarthost wants TLS before anything else: set tls = \"starttls\" (port 587) or tls = \"tls\" (port 465) in [smarthost]"
	case s.Code == 530 || s.Code == 550 && strings.Contains(t, "authentication required"):
		return "the smarthost wants a login: set username and a password source (password_file) in [smarthost]"
	case s.Code/100 == 5 && s.Stage == "MAIL" && (strings.HasPrefix(s.Enhanced, "5.7.") || strings.HasPrefix(s.Enhanced, "5.1.")) || sendAs(t):
		return "the smarthost does not let this account send as this sender: set [rewrite] sender (and from) to an address the account owns, or allow the sender at the provider"
	case s.Enhanced == "5.3.4" || s.Enhanced == "5.2.3" ||
		s.Code == 552 && s.Enhanced != "5.2.2" && (strings.Contains(t, "size") || strings.Contains(t, "too big") || strings.Contains(t, "too large")):
		if s.Size > 0 {
			return fmt.Sprintf("the message is larger than the smarthost takes (it announced SIZE %d, %s): send it smaller or as a link; max_message_size = %q refuses such messages when they are sent", s.Size, mb(s.Size), mb(s.Size))
		}
		return "the message is larger than the smarthost takes: send it smaller or as a link, and set max_message_size to the provider's limit so that sendmail refuses such messages at once"
	case s.Code/100 == 5 && s.Stage != "MAIL" && strings.Contains(t, "relay") && (strings.Contains(t, "denied") || strings.Contains(t, "not permitted")):
		return "the smarthost does not relay for this client: log in (username and a password source in [smarthost]) or ask its admin to allow this machine"
	case quota(s):
		return "the account's sending quota is used up for now: the mail waits in the queue and goes when it lifts; set daily_limit (and rate) in [smarthost] below the provider's limits"
	case throttle(s):
		return "the smarthost limits how fast this account may send: mail waits and is retried; set rate (and daily_limit) in [smarthost] to the provider's limits so that it waits here instead"
	}
	return ""
}

// sendAs reports the texts of "you may not send as that address".
func sendAs(t string) bool {
	for _, p := range []string{"sender address rejected", "not owned by", "sendasdenied", "sender not allowed", "not authorized to send", "not allowed to send as", "from address is not verified", "email address is not verified"} {
		if strings.Contains(t, p) {
			return true
		}
	}
	return false
}

// quota and throttle use the rules that pause the smarthost
// (internal/limits), so that the hint says what relaymail does.
func quota(s Situation) bool { return limits.Quota(s.Code, s.Enhanced, s.Text) }

func throttle(s Situation) bool {
	if s.Stage == "RCPT" || s.Stage == "" {
		return limits.RecipientThrottling(s.Code, s.Text)
	}
	return limits.Throttling(s.Code, s.Enhanced, s.Text)
}

func mb(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%dMB", n>>20)
	}
	return fmt.Sprintf("%.1fMB", float64(n)/(1<<20))
}

// Network is the hint for a failure without a reply: what was tried,
// where, and the usual cause.
func Network(stage, addr string, refused, timeout, noSuchHost bool) string {
	switch {
	case noSuchHost:
		return fmt.Sprintf("the name in %s does not resolve: check host in [smarthost], and this machine's DNS (/etc/resolv.conf)", addr)
	case refused:
		return fmt.Sprintf("nothing accepts connections on %s: check host and port in [smarthost] (587 with tls = \"starttls\", 465 with tls = \"tls\")", addr)
	case timeout && stage == "connect":
		return fmt.Sprintf("%s did not answer the connection: a firewall may block the port (many clouds block 25, some 587 and 465); check port in [smarthost]", addr)
	case timeout:
		return fmt.Sprintf("%s stopped answering during %s: check the network to it, or raise timeout in [smarthost] if it is slow", addr, stage)
	}
	return ""
}

// FromResult is the Situation of a reply as relaymail records it for a
// recipient: "550 5.7.1 text" (the enhanced code optional), its stage
// unknown.
func FromResult(code int, reply, host, tls string) Situation {
	s := Situation{Code: code, Host: host, TLS: tls, Text: reply}
	rest, ok := strings.CutPrefix(reply, fmt.Sprint(code)+" ")
	if !ok {
		return s
	}
	s.Text = rest
	if e, text, ok := strings.Cut(rest, " "); ok && enhancedCode(e) {
		s.Enhanced, s.Text = e, text
	}
	return s
}

// enhancedCode reports whether e looks like "5.7.1".
func enhancedCode(e string) bool {
	parts := strings.Split(e, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || parts[0] < "2" || parts[0] > "5" {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}
