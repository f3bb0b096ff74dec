package limits

import "strings"

// Throttling reports whether an SMTP reply asks the client to slow down,
// rather than refusing one message or recipient:
//
//   - 421: the server is closing the channel, which is how most of them
//     turn away a client that connects or sends too fast;
//   - 450, 451, 452 or 454 with enhanced code 4.7.x (policy) or 4.3.2 (not
//     accepting messages now), unless it is about too many recipients in
//     one message (452 4.5.3, handled per message) or greylisting;
//   - any 4xx whose text says so ("rate limit", "too many messages",
//     "throttled", Yahoo's "unexpected volume", ...);
//   - a daily sending quota reported as a 5xx (Gmail's "550 5.4.5 Daily
//     user sending limit exceeded"): permanent for today only, so the
//     message must wait, not bounce. Quota reports whether it is one.
//
// enhanced is "4.7.0" or "". It judges a reply to the session or to MAIL;
// a refused recipient is judged by RecipientThrottling.
func Throttling(code int, enhanced, text string) bool {
	t := strings.ToLower(text)
	if strings.Contains(t, "too many recipients") || strings.Contains(t, "greylist") || strings.Contains(t, "graylist") {
		return false
	}
	switch {
	case code == 421:
		return true
	case Quota(code, enhanced, text):
		return true
	case code/100 != 4:
		return false
	case (code == 450 || code == 451 || code == 452 || code == 454) &&
		(strings.HasPrefix(enhanced, "4.7.") || enhanced == "4.3.2"):
		return true
	}
	for _, p := range slowDown {
		if strings.Contains(t, p) {
			return true
		}
	}
	return false
}

// Quota reports a daily or hourly sending quota refused with a 5xx, which
// lifts by itself: 5.4.5 (RFC 3463: mail system congestion), or a text
// that names a sending limit or quota.
func Quota(code int, enhanced, text string) bool {
	if code/100 != 5 {
		return false
	}
	t := strings.ToLower(text)
	return enhanced == "5.4.5" || strings.Contains(t, "sending limit exceeded") || strings.Contains(t, "sending quota exceeded") ||
		strings.Contains(t, "daily user sending")
}

// slowDown are texts of 4xx replies that mean "too fast".
var slowDown = []string{
	"rate limit", "ratelimit", "rate exceeded", "throttl", "slow down", "too fast",
	"too many messages", "too many mails", "too many emails", "too many connections", "too many concurrent",
	"too much mail", // Postfix's anvil: "450 4.7.1 Error: too much mail from 192.0.2.1"
	"sending rate", "unusual rate", "unexpected volume", "exceeded the rate", "try again in",
}

// RecipientThrottling reports whether a refused recipient says the client
// goes too fast. A recipient's 4.7.x alone is its own policy ("Access
// denied", "Relay access denied", a greylister): only a 421 or a text that
// says so counts.
func RecipientThrottling(code int, text string) bool {
	t := strings.ToLower(text)
	if code == 421 {
		return true
	}
	if code/100 != 4 || strings.Contains(t, "greylist") || strings.Contains(t, "graylist") || strings.Contains(t, "too many recipients") {
		return false
	}
	for _, p := range slowDown {
		if strings.Contains(t, p) {
			return true
		}
	}
	return false
}
