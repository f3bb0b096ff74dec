package spool

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fullEnvelope uses every field.
func fullEnvelope() *Envelope {
	return &Envelope{
		Version: Version,
		ID:      "01JD2K7Q5W3N8X4Z",
		From:    "www-data@web1.example.com",
		Recipients: []Recipient{
			{Addr: "alice@example.com", State: Sent, Code: 250, Reply: "2.0.0 Ok: queued as 4Yx <id>", Updated: t0().Add(time.Minute), Notify: []string{"SUCCESS", "FAILURE"}, ORcpt: "rfc822;alice@example.com"},
			{Addr: "bob@example.net", State: Pending, Code: 451, Reply: "4.7.1 greylisted", Updated: t0().Add(time.Minute)},
			{Addr: "root", State: Failed, Code: 550, Reply: "5.1.1 user unknown", Notify: []string{"NEVER"}, ORcpt: "root"},
			{Addr: `"john doe"@example.org`, State: Pending},
			{Addr: "jürgen@bücher.example", State: Pending},
		},
		Body:        "8BITMIME",
		EightBit:    true,
		SMTPUTF8:    true,
		Size:        123456,
		Return:      "HDRS",
		EnvID:       "QQ314159",
		ErrorMode:   "m",
		MessageID:   "20241120100000.1234@web1.example.com",
		Created:     t0(),
		Attempts:    3,
		NextAttempt: t0().Add(30 * time.Minute),
		LastError:   "smtp.example.com:587: connection refused",
		UID:         33,
		User:        "www-data",
	}
}

// minimalJSON is the smallest envelope Decode accepts, with ID to replace.
const minimalJSON = `{"version":1,"id":"01JD2K7Q5W3N8X4Z","from":"","recipients":[{"addr":"root","state":"pending"}],` +
	`"size":0,"created":"2024-11-20T10:00:00Z","attempts":0,"next_attempt":"0001-01-01T00:00:00Z","uid":0}`

func TestEncodeDecode(t *testing.T) {
	e := fullEnvelope()
	b, err := Encode(e)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if bytes.Count(b, []byte("\n")) != 1 || !bytes.HasSuffix(b, []byte("}\n")) {
		t.Errorf("Encode gave more than one line:\n%s", b)
	}
	if !bytes.Contains(b, []byte(`"reply":"2.0.0 Ok: queued as 4Yx <id>"`)) {
		t.Errorf("Encode escaped HTML characters:\n%s", b)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode(Encode(e)): %v\n%s", err, b)
	}
	if !reflect.DeepEqual(got, e) {
		t.Errorf("Decode(Encode(e)) = %+v\nwant %+v", got, e)
	}
	// What Encode writes takes the fast path (mailq and queue runs read
	// thousands), and a key spelled otherwise does not.
	if decodeCanonical(b) == nil {
		t.Errorf("the fast path refused what Encode wrote:\n%s", b)
	}
	if odd := bytes.Replace(b, []byte(`"id"`), []byte(`"ID"`), 1); decodeCanonical(odd) != nil {
		t.Errorf("the fast path accepted a key Encode does not write:\n%s", odd)
	}
}

func TestEncodeWritesUTC(t *testing.T) {
	e := fullEnvelope()
	paris := time.FixedZone("CET", 3600)
	e.Created = e.Created.In(paris)
	e.Recipients[0].Updated = e.Recipients[0].Updated.In(paris)
	b, err := Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("+01:00")) {
		t.Errorf("Encode kept the time zone:\n%s", b)
	}
	if e.Created.Location() != paris {
		t.Errorf("Encode changed its argument")
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Created.Equal(e.Created) || got.Created.Location() != time.UTC {
		t.Errorf("Created = %v, want %v in UTC", got.Created, e.Created)
	}
}

func TestDecodeMinimal(t *testing.T) {
	e, err := Decode([]byte(minimalJSON))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := &Envelope{
		Version: 1, ID: "01JD2K7Q5W3N8X4Z", From: "",
		Recipients: []Recipient{{Addr: "root", State: Pending}},
		Created:    t0(),
	}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("Decode = %+v, want %+v", e, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	// edit returns minimalJSON with old replaced by new.
	edit := func(old, new string) string {
		if !strings.Contains(minimalJSON, old) {
			panic("test bug: " + old)
		}
		return strings.Replace(minimalJSON, old, new, 1)
	}
	rcpt := func(r string) string { return edit(`{"addr":"root","state":"pending"}`, r) }
	tests := []struct {
		name  string
		input string
		want  string // the error message after "invalid envelope: "
	}{
		{"empty", ``, "not JSON: unexpected end of JSON input at byte 0"},
		{"null", `null`, "not a JSON object"},
		{"array", `[]`, "array where an object belongs"},
		{"string", `"version"`, "string where an object belongs"},
		{"trailing data", minimalJSON + `{}`, "not JSON: invalid character '{' after top-level value at byte 198"},
		{"truncated", minimalJSON[:50], "not JSON: unexpected end of JSON input at byte 50"},
		{"no version", edit(`"version":1,`, ``), "version: missing"},
		{"version 2", edit(`"version":1,`, `"version":2,"priority":"high",`), "version: version 2 is not known (this program reads 1)"},
		{"version 0", edit(`"version":1,`, `"version":0,`), "version: version 0 is not known (this program reads 1)"},
		{"version string", edit(`"version":1,`, `"version":"1",`), `version: not an integer: "1"`},
		{"version float", edit(`"version":1,`, `"version":1.0,`), "version: not an integer: 1.0"},
		{"version null", edit(`"version":1,`, `"version":null,`), "version: not an integer: null"},
		{"unknown field", edit(`"uid":0`, `"uid":0,"priority":1`), "priority: unknown field"},
		{"key in another case", edit(`"id"`, `"ID"`), "ID: unknown field"},
		{"missing id", edit(`"id":"01JD2K7Q5W3N8X4Z",`, ``), "id: missing"},
		{"missing from", edit(`"from":"",`, ``), "from: missing"},
		{"null from", edit(`"from":""`, `"from":null`), "from: null"},
		{"missing created", edit(`"created":"2024-11-20T10:00:00Z",`, ``), "created: missing"},
		{"missing uid", edit(`,"uid":0`, ``), "uid: missing"},
		{"zero created", edit(`2024-11-20T10:00:00Z`, `0001-01-01T00:00:00Z`), "created: missing"},
		{"bad time", edit(`2024-11-20T10:00:00Z`, `2024-11-20 10:00`), `created: not an RFC 3339 time: "2024-11-20 10:00"`},
		{"bad updated", rcpt(`{"addr":"root","state":"sent"},{"addr":"root","state":"sent","updated":"yesterday"}`), `recipients[1].updated: not an RFC 3339 time: "yesterday"`},
		{"time as number", edit(`"2024-11-20T10:00:00Z"`, `1732096800`), `created: not an RFC 3339 time: 1732096800`},
		{"year 0 in UTC", edit(`2024-11-20T10:00:00Z`, `0000-01-01T00:00:00+01:00`), "created: year -1 out of range"},
		{"bad id", edit(`01JD2K7Q5W3N8X4Z`, `01JD2K7Q5W3N8X4`), `id: not a queue id: "01JD2K7Q5W3N8X4"`},
		{"path as id", edit(`01JD2K7Q5W3N8X4Z`, `../../etc/passwd`), `id: not a queue id: "../../etc/passwd"`},
		{"from with LF", edit(`"from":""`, `"from":"a@b\nRCPT TO:<c@d>"`), `from: invalid address "a@b\nRCPT TO:<c@d>": contains a line break`},
		{"from with CR", edit(`"from":""`, `"from":"a@b\r"`), `from: invalid address "a@b\r": contains a line break`},
		{"from with NUL", edit(`"from":""`, `"from":"a\u0000@b"`), `from: invalid address "a\x00@b": contains a NUL byte`},
		{"from in brackets", edit(`"from":""`, `"from":"<>"`), `from: invalid address "<>": unquoted '<' in local part`},
		{"no recipients", edit(`[{"addr":"root","state":"pending"}]`, `[]`), "recipients: no recipients"},
		{"null recipients", edit(`[{"addr":"root","state":"pending"}]`, `null`), "recipients: null"},
		{"recipients not a list", edit(`[{"addr":"root","state":"pending"}]`, `{}`), "recipients: object where a list belongs"},
		{"null recipient", rcpt(`null`), "recipients[0]: not a JSON object"},
		{"recipient with LF", rcpt(`{"addr":"a@b\n","state":"pending"}`), `recipients[0].addr: invalid address "a@b\n": contains a line break`},
		{"recipient with CR", rcpt(`{"addr":"a@b\r","state":"pending"}`), `recipients[0].addr: invalid address "a@b\r": contains a line break`},
		{"recipient with NUL", rcpt(`{"addr":"a@b\u0000","state":"pending"}`), `recipients[0].addr: invalid address "a@b\x00": contains a NUL byte`},
		{"empty recipient", rcpt(`{"addr":"","state":"pending"}`), `recipients[0].addr: invalid address "": empty address`},
		{"recipient without state", rcpt(`{"addr":"root"}`), "recipients[0].state: missing"},
		{"recipient without addr", rcpt(`{"state":"sent"}`), "recipients[0].addr: missing"},
		{"second recipient bad", rcpt(`{"addr":"root","state":"pending"},{"addr":"x","state":"done"}`), `recipients[1].state: unknown state "done"`},
		{"recipient unknown field", rcpt(`{"addr":"root","state":"pending","dsn":1}`), "recipients[0].dsn: unknown field"},
		{"recipient key case", rcpt(`{"Addr":"root","state":"pending"}`), "recipients[0].Addr: unknown field"},
		{"reply with CRLF", rcpt(`{"addr":"root","state":"sent","reply":"250-a\r\n250 b"}`), "recipients[0].reply: contains a line break"},
		{"orcpt with NUL", rcpt(`{"addr":"root","state":"sent","orcpt":"a\u0000"}`), "recipients[0].orcpt: contains a NUL byte"},
		{"code 99", rcpt(`{"addr":"root","state":"sent","code":99}`), "recipients[0].code: not an SMTP reply code: 99"},
		{"code string", rcpt(`{"addr":"root","state":"sent","code":"250"}`), "recipients.code: string where an integer belongs"},
		{"notify unknown", rcpt(`{"addr":"root","state":"sent","notify":["ALWAYS"]}`), `recipients[0].notify: unknown DSN NOTIFY value "ALWAYS"`},
		{"notify NEVER and more", rcpt(`{"addr":"root","state":"sent","notify":["NEVER","FAILURE"]}`), "recipients[0].notify: NEVER combined with other values"},
		{"body", edit(`"size":0`, `"size":0,"body":"BINARYMIME"`), `body: unknown body type "BINARYMIME"`},
		{"ret", edit(`"size":0`, `"size":0,"ret":"full"`), `ret: unknown DSN RET "full"`},
		{"error mode", edit(`"size":0`, `"size":0,"error_mode":"x"`), `error_mode: unknown error mode "x"`},
		{"negative size", edit(`"size":0`, `"size":-1`), "size: negative"},
		{"float size", edit(`"size":0`, `"size":1e3`), "size: number 1e3 where an integer belongs"},
		{"bool as string", edit(`"size":0`, `"size":0,"smtputf8":"yes"`), "smtputf8: string where a bool belongs"},
		{"negative attempts", edit(`"attempts":0`, `"attempts":-1`), "attempts: negative"},
		{"negative uid", edit(`"uid":0`, `"uid":-1`), "uid: negative"},
		{"message id with LF", edit(`"size":0`, `"size":0,"message_id":"a\nb"`), "message_id: contains a line break"},
		{"last error with CR", edit(`"size":0`, `"size":0,"last_error":"a\rb"`), "last_error: contains a line break"},
		{"user with NUL", edit(`"size":0`, `"size":0,"user":"a\u0000"`), "user: contains a NUL byte"},
		{"envid with LF", edit(`"size":0`, `"size":0,"envid":"a\n"`), "envid: contains a line break"},
		{"too large", strings.Repeat(" ", maxEnvelope) + minimalJSON, "larger than 8388608 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Decode([]byte(tt.input))
			if err == nil {
				t.Fatalf("Decode(%.200q) = %+v, want an error", tt.input, e)
			}
			var ee *EnvelopeError
			if !errors.As(err, &ee) {
				t.Errorf("Decode error %v is a %T, want *EnvelopeError", err, err)
			}
			if want := "invalid envelope: " + tt.want; err.Error() != want {
				t.Errorf("Decode(%.200q) error\n got %q\nwant %q", tt.input, err, want)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(e *Envelope)
		want   string
	}{
		{"version 0", func(e *Envelope) { e.Version = 0 }, "version: version 0 is not known (this program writes 1)"},
		{"no id", func(e *Envelope) { e.ID = "" }, `id: not a queue id: ""`},
		{"from with LF", func(e *Envelope) { e.From = "a@b\n" }, `from: invalid address "a@b\n": contains a line break`},
		{"recipient with CR", func(e *Envelope) { e.Recipients[1].Addr = "b@c\rDATA" }, `recipients[1].addr: invalid address "b@c\rDATA": contains a line break`},
		{"recipient with NUL", func(e *Envelope) { e.Recipients[0].Addr = "\x00" }, `recipients[0].addr: invalid address "\x00": contains a NUL byte`},
		{"recipient not UTF-8", func(e *Envelope) { e.Recipients[0].Addr = "j\xfcrgen@example.com" }, `recipients[0].addr: invalid address "j\xfcrgen@example.com": not valid UTF-8`},
		{"no recipients", func(e *Envelope) { e.Recipients = nil }, "recipients: no recipients"},
		{"state", func(e *Envelope) { e.Recipients[0].State = "" }, `recipients[0].state: unknown state ""`},
		{"multi-line reply", func(e *Envelope) { e.Recipients[0].Reply = "550-a\r\n550 b" }, "recipients[0].reply: contains a line break"},
		{"zero created", func(e *Envelope) { e.Created = time.Time{} }, "created: missing"},
		{"year 10000", func(e *Envelope) { e.NextAttempt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "next_attempt: year 10000 out of range"},
		{"negative size", func(e *Envelope) { e.Size = -5 }, "size: negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := fullEnvelope()
			tt.change(e)
			b, err := Encode(e)
			if err == nil {
				t.Fatalf("Encode = %s, want an error", b)
			}
			if want := "invalid envelope: " + tt.want; err.Error() != want {
				t.Errorf("Encode error\n got %q\nwant %q", err, want)
			}
		})
	}
	if _, err := Encode(nil); err == nil {
		t.Errorf("Encode(nil) succeeded")
	}
}

func TestPending(t *testing.T) {
	e := fullEnvelope()
	if got := e.Pending(); !reflect.DeepEqual(got, []int{1, 3, 4}) {
		t.Errorf("Pending() = %v, want [1 3 4]", got)
	}
	e.Recipients = e.Recipients[:1]
	if got := e.Pending(); got != nil {
		t.Errorf("Pending() = %v, want nil", got)
	}
}

// FuzzEnvelope checks that Decode never panics, that what it accepts
// Encode writes back, that decoding that gives the same value and encoding
// it the same bytes (age's round-trip idea), and that no address it
// accepts holds CR, LF or NUL.
func FuzzEnvelope(f *testing.F) {
	full, err := Encode(fullEnvelope())
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		minimalJSON,
		string(full),
		strings.Replace(minimalJSON, `"from":""`, `"from":"a@b\n"`, 1),
		strings.Replace(minimalJSON, `"version":1`, `"version":2`, 1),
		strings.Replace(minimalJSON, `2024-11-20T10:00:00Z`, `2024-11-20T10:00:00.123456789+05:30`, 1),
		strings.Replace(minimalJSON, `"state":"pending"`, `"state":"sent","notify":[],"updated":"2024-01-01T00:00:00-01:00"`, 1),
		strings.Replace(minimalJSON, `"uid":0`, `"uid":0,"user":"\ud800\u2028<&>","message_id":"\xff"`, 1),
		`{"version":1}`,
		`{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// The fast path accepts only what the strict one accepts, and
		// gives the same envelope.
		if fast := decodeCanonical(b); fast != nil {
			strict, err := decodeStrict(b)
			if err != nil {
				t.Fatalf("the fast path accepted %q, the strict one says %v", b, err)
			}
			if !reflect.DeepEqual(fast, strict) {
				t.Fatalf("the paths disagree on %q:\n%+v\n%+v", b, fast, strict)
			}
		}
		e1, err := Decode(b)
		if err != nil {
			var ee *EnvelopeError
			if !errors.As(err, &ee) {
				t.Fatalf("Decode error %v is a %T", err, err)
			}
			return
		}
		for _, a := range append([]string{e1.From}, addrs(e1)...) {
			if strings.ContainsAny(a, "\r\n\x00") {
				t.Fatalf("Decode accepted the address %q", a)
			}
		}
		b2, err := Encode(e1)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)): %v", b, err)
		}
		e2, err := Decode(b2)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) = %v\nencoded: %s", b, err, b2)
		}
		if !reflect.DeepEqual(e1, e2) {
			t.Fatalf("round trip changed the envelope:\n%+v\n%+v", e1, e2)
		}
		b3, err := Encode(e2)
		if err != nil || !bytes.Equal(b2, b3) {
			t.Fatalf("encoding is not stable: %v\n%s\n%s", err, b2, b3)
		}
	})
}

func addrs(e *Envelope) []string {
	var out []string
	for _, r := range e.Recipients {
		out = append(out, r.Addr)
	}
	return out
}
