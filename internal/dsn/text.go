package dsn

import (
	"strings"
	"time"
	"unicode/utf8"
)

// textWidth is where the explanation wraps, in characters.
const textWidth = 72

// explanation returns the first part of the report: plain words for the
// person who sent the message, with CRLF line endings. It names each
// recipient, quotes the server's reply or gives our reason, and says what
// to do. Lines wrap at 72 characters after their indent; a word too long
// for a line gets its own, cut at 900 bytes so 7bit lines stay under 998.
func (rep *report) explanation(att attachment) string {
	var t text
	t.para("This is the mail system at " + rep.opts.ReportingMTA + ".")

	groups := []struct {
		action, one, many string
	}{
		{"failed",
			"Your message could not be delivered to the recipient below. This is a permanent error: the mail system has given up and will not try again.",
			"Your message could not be delivered to the recipients below. This is a permanent error: the mail system has given up and will not try again."},
		{"delayed",
			"Your message has not been delivered yet to the recipient below. You do not need to do anything: the mail system will keep trying, and will tell you if it gives up.",
			"Your message has not been delivered yet to the recipients below. You do not need to do anything: the mail system will keep trying, and will tell you if it gives up."},
		{"delivered",
			"Your message was delivered to the recipient below.",
			"Your message was delivered to the recipients below."},
	}
	for _, g := range groups {
		var rs []recipient
		for _, r := range rep.recips {
			if r.Action == g.action {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		intro := g.many
		if len(rs) == 1 {
			intro = g.one
		}
		t.para(intro)
		for _, r := range rs {
			t.line("  ", clean(r.Addr))
			switch {
			case r.serverReply != "" && clean(r.RemoteMTA) != "":
				t.line("    ", "The mail server "+clean(r.RemoteMTA)+" replied:")
				t.line("      ", r.serverReply)
			case r.serverReply != "":
				t.line("    ", "The mail server replied:")
				t.line("      ", r.serverReply)
			}
			if reason := clean(r.Reason); reason != "" {
				t.line("    ", "Reason: "+reason)
			}
			if r.Action == "failed" {
				t.line("    ", hint(r.status))
			}
			if h := clean(r.Hint); h != "" {
				t.line("    ", "For the administrator of the sending system: "+h)
			}
			t.blank()
		}
	}

	var sent string
	if !rep.opts.Arrival.IsZero() {
		sent = "Your message was sent on " + rep.opts.Arrival.Format(time.RFC1123Z) + ". "
	}
	switch {
	case att.full:
		t.para(sent + "It is attached below.")
	case att.tooBig:
		t.para(sent + "It was too large to return in full, so only its header is attached below, to show which message this was.")
	default:
		t.para(sent + "Its header is attached below, to show which message this was.")
	}
	if !rep.delivered() {
		t.para("If you need help, forward this whole message to your mail administrator.")
	}
	// Drop the last paragraph's empty line: the boundary brings its own.
	return strings.TrimSuffix(t.String(), "\r\n")
}

// hint tells a person what to do about a failure with enhanced status
// code status (RFC 3463: class.subject.detail).
func hint(status string) string {
	_, sd, _ := strings.Cut(status, ".")
	switch sd {
	case "1.1", "1.3", "1.6", "1.10":
		return "The address does not exist. Check it for typing mistakes, then send your message again."
	case "1.2":
		return "The domain, the part of the address after the @, does not exist or does not receive mail. Check the address for typing mistakes, then send your message again."
	case "2.1":
		return "The recipient's mailbox is disabled. Please reach the recipient some other way."
	case "2.2":
		return "The recipient's mailbox is full. Try again later, or reach the recipient some other way."
	case "2.3", "3.4":
		return "Your message is too large for the recipient's mail system. Send smaller attachments, or share large files with a link."
	case "4.7":
		return "The message could not be delivered in time. If the address is right, send your message again later."
	}
	switch subject, _, _ := strings.Cut(sd, "."); subject {
	case "1":
		return "There is a problem with the address. Check it for typing mistakes, then send your message again."
	case "4":
		return "The recipient's mail system could not be reached. If the address is right, send your message again later."
	case "7":
		return "The recipient's mail system refused your message for security or policy reasons, for example because it looked like spam. Reach the recipient some other way, or ask your mail administrator."
	}
	return "If the address is right, send your message again later. If this keeps happening, ask your mail administrator for help."
}

// text builds wrapped paragraphs with CRLF line endings.
type text struct {
	b strings.Builder
}

func (t *text) String() string { return t.b.String() }

func (t *text) blank() { t.b.WriteString("\r\n") }

// para writes s as a wrapped paragraph and an empty line.
func (t *text) para(s string) {
	t.line("", s)
	t.blank()
}

// line writes s, words separated by single spaces, wrapped at textWidth
// characters, each line starting with indent.
func (t *text) line(indent, s string) {
	const maxWord = 900
	n := 0 // characters on the current line, indent excluded
	for _, word := range strings.Split(s, " ") {
		for {
			chunk := word
			if len(chunk) > maxWord {
				cut := maxWord
				for !utf8.RuneStart(chunk[cut]) {
					cut--
				}
				chunk = chunk[:cut]
			}
			w := utf8.RuneCountInString(chunk)
			switch {
			case n == 0:
				t.b.WriteString(indent)
			case n+1+w > textWidth:
				t.b.WriteString("\r\n" + indent)
				n = 0
			default:
				t.b.WriteByte(' ')
				n++
			}
			t.b.WriteString(chunk)
			n += w
			word = word[len(chunk):]
			if word == "" {
				break
			}
			n = textWidth // the rest of a cut word starts a line
		}
	}
	t.b.WriteString("\r\n")
}
