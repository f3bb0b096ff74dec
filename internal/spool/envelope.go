package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"relaymail/internal/address"
)

// Version is the envelope version this package writes and the only one it
// reads.
const Version = 1

// maxEnvelope bounds an envelope file: Encode refuses to write a larger one
// and Decode to read it. 10,000 recipients fit.
const maxEnvelope = 8 << 20

// State is a recipient's delivery state.
type State string

// The recipient states. A pending recipient is tried again; sent and failed
// are final.
const (
	Pending State = "pending"
	Sent    State = "sent"
	Failed  State = "failed"
)

// Recipient is one envelope recipient and what became of it.
type Recipient struct {
	Addr    string    `json:"addr"`
	State   State     `json:"state"`
	Code    int       `json:"code,omitempty"`   // last SMTP reply code, 200-599 (0: none, or a network error)
	Reply   string    `json:"reply,omitempty"`  // last reply or reason, one line
	Updated time.Time `json:"updated,omitzero"` // when State or Reply last changed
	Notify  []string  `json:"notify,omitempty"` // DSN NOTIFY (-N): NEVER alone, or SUCCESS, DELAY, FAILURE
	ORcpt   string    `json:"orcpt,omitempty"`  // the address as the caller wrote it, before aliases and qualification
}

// Envelope is what the queue knows of a message besides its bytes.
type Envelope struct {
	Version     int         `json:"version"` // Version; Decode refuses versions it does not know
	ID          string      `json:"id"`
	From        string      `json:"from"` // "" is the null sender <>
	Recipients  []Recipient `json:"recipients"`
	Body        string      `json:"body,omitempty"` // "7BIT", "8BITMIME" or ""
	EightBit    bool        `json:"eight_bit,omitempty"`
	SMTPUTF8    bool        `json:"smtputf8,omitempty"`
	Size        int64       `json:"size"`                 // bytes of the message file
	Return      string      `json:"ret,omitempty"`        // DSN RET: "FULL", "HDRS" or ""
	EnvID       string      `json:"envid,omitempty"`      // DSN ENVID
	ErrorMode   string      `json:"error_mode,omitempty"` // "p", "m", "q", "w", "e" from -oe?, or ""
	MessageID   string      `json:"message_id,omitempty"`
	Created     time.Time   `json:"created"`
	Attempts    int         `json:"attempts"`
	NextAttempt time.Time   `json:"next_attempt"`         // zero: as soon as possible
	LastError   string      `json:"last_error,omitempty"` // last session-level trouble, for mailq
	// Held says NextAttempt waits for a rate-limit slot or the end of a
	// throttle pause, not a retry after trouble.
	Held bool   `json:"held,omitempty"`
	UID  int    `json:"uid"`
	User string `json:"user,omitempty"`
}

// Pending returns the indexes in e.Recipients of the recipients still to be
// tried, in order.
func (e *Envelope) Pending() []int {
	var idx []int
	for i, r := range e.Recipients {
		if r.State == Pending {
			idx = append(idx, i)
		}
	}
	return idx
}

// EnvelopeError is an envelope that [Encode] or [Decode] refuses. Field is
// the JSON field at fault, such as "recipients[2].addr", or "" when the
// document as a whole is.
type EnvelopeError struct {
	Field  string
	Reason string
}

func (e *EnvelopeError) Error() string {
	if e.Field == "" {
		return "invalid envelope: " + e.Reason
	}
	return "invalid envelope: " + e.Field + ": " + e.Reason
}

func invalid(field, format string, args ...any) error {
	return &EnvelopeError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Encode returns e as one line of JSON ending in a newline, with times in
// UTC. It does not modify e. It refuses, with an [*EnvelopeError], what
// [Decode] would refuse: a version other than [Version], a malformed id, an
// address that fails [address.Check] (CR, LF, NUL...), no recipients, a
// line break or NUL in any text, an unknown state or enumeration value.
// Free text (replies, errors) that is not valid UTF-8 is written with
// U+FFFD in place of the bad bytes, as encoding/json does.
func Encode(e *Envelope) ([]byte, error) {
	if e == nil {
		return nil, invalid("", "nil envelope")
	}
	if err := validate(e); err != nil {
		return nil, err
	}
	return encode(e)
}

// encode is Encode without the validation.
func encode(e *Envelope) ([]byte, error) {
	c := *e
	c.Created = c.Created.UTC()
	c.NextAttempt = c.NextAttempt.UTC()
	c.Recipients = slices.Clone(e.Recipients)
	for i := range c.Recipients {
		c.Recipients[i].Updated = c.Recipients[i].Updated.UTC()
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep "<" and "&" in replies readable
	if err := enc.Encode(&c); err != nil {
		return nil, invalid("", "%v", err)
	}
	if buf.Len() > maxEnvelope {
		return nil, invalid("", "larger than %d bytes", maxEnvelope)
	}
	return buf.Bytes(), nil
}

// Decode parses an envelope written by [Encode]. It is strict, because the
// envelope decides where mail goes: required fields must be present and not
// null, key names must match exactly, unknown keys, trailing data and
// unknown versions are refused, and the values must pass the checks Encode
// makes. Times come back in UTC. Errors are [*EnvelopeError].
func Decode(b []byte) (*Envelope, error) {
	if len(b) > maxEnvelope {
		return nil, invalid("", "larger than %d bytes", maxEnvelope)
	}
	if e := decodeCanonical(b); e != nil {
		return e, nil
	}
	return decodeStrict(b)
}

// decodeStrict is Decode's judge of every envelope that is not exactly as
// Encode writes it.
func decodeStrict(b []byte) (*Envelope, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, invalid("", "%s", jsonReason(err))
	}
	if top == nil {
		return nil, invalid("", "not a JSON object")
	}
	// The version comes first: a newer envelope is "unknown version", not a
	// list of unknown fields.
	raw, ok := top["version"]
	if !ok {
		return nil, invalid("version", "missing")
	}
	var v int
	if err := json.Unmarshal(raw, &v); err != nil || bytes.Equal(raw, []byte("null")) {
		return nil, invalid("version", "not an integer: %s", raw)
	}
	if v != Version {
		return nil, invalid("version", "version %d is not known (this program reads %d)", v, Version)
	}
	if err := checkKeys(top, envelopeKey,
		"version", "id", "from", "recipients", "size", "created", "attempts", "next_attempt", "uid"); err != nil {
		return nil, err
	}
	var rs []map[string]json.RawMessage
	if err := json.Unmarshal(top["recipients"], &rs); err != nil {
		return nil, invalid("recipients", "%s", jsonReason(err))
	}
	for i, r := range rs {
		if r == nil {
			return nil, invalid(fmt.Sprintf("recipients[%d]", i), "not a JSON object")
		}
		if err := checkKeys(r, recipientKey, "addr", "state"); err != nil {
			var ee *EnvelopeError
			errors.As(err, &ee)
			ee.Field = "recipients[" + strconv.Itoa(i) + "]." + ee.Field
			return nil, err
		}
	}
	e := new(Envelope)
	if err := json.Unmarshal(b, e); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, invalid(te.Field, "%s", jsonReason(err))
		}
		if err := checkTimes(top, rs); err != nil {
			return nil, err
		}
		return nil, invalid("", "%s", jsonReason(err))
	}
	// Normalise what JSON lets differ but the struct must not, so that
	// decode, encode, decode gives the same value.
	e.Created = e.Created.UTC()
	e.NextAttempt = e.NextAttempt.UTC()
	for i := range e.Recipients {
		r := &e.Recipients[i]
		r.Updated = r.Updated.UTC()
		if len(r.Notify) == 0 {
			r.Notify = nil
		}
	}
	if err := validate(e); err != nil {
		return nil, err
	}
	return e, nil
}

// decodeCanonical is Decode's fast path, for the envelopes Encode wrote
// (all of them, unless someone edited one): it decodes b leniently, in one
// pass, and accepts the result only when it passes validate and encoding
// it again gives b byte for byte. Such bytes are exactly what the strict
// path accepts: every key spelled as Encode spells it, none unknown or
// repeated, every required one present, and values it would take. It
// returns nil for anything else, which the strict path then judges.
func decodeCanonical(b []byte) *Envelope {
	e := new(Envelope)
	if json.Unmarshal(b, e) != nil || validate(e) != nil {
		return nil
	}
	again, err := encode(e)
	if err != nil || !bytes.Equal(again, b) {
		return nil
	}
	// Times decoded from "...Z" are UTC already; Decode's promise is that
	// they come back in UTC, with no location of their own.
	e.Created = e.Created.UTC()
	e.NextAttempt = e.NextAttempt.UTC()
	for i := range e.Recipients {
		e.Recipients[i].Updated = e.Recipients[i].Updated.UTC()
	}
	return e
}

// envelopeKey and recipientKey report whether k is a field of the object.
func envelopeKey(k string) bool {
	switch k {
	case "version", "id", "from", "recipients", "size", "created", "attempts", "next_attempt", "uid",
		"body", "eight_bit", "smtputf8", "ret", "envid", "error_mode", "message_id", "last_error", "user", "held":
		return true
	}
	return false
}

func recipientKey(k string) bool {
	switch k {
	case "addr", "state", "code", "reply", "updated", "notify", "orcpt":
		return true
	}
	return false
}

// checkKeys refuses unknown keys (encoding/json would ignore them, and match
// "ID" to "id"), and missing or null required ones. The required keys are
// the fields without omitempty, in the order their absence is reported.
func checkKeys(obj map[string]json.RawMessage, known func(string) bool, required ...string) error {
	var unknown []string
	for k := range obj {
		if !known(k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return invalid(unknown[0], "unknown field")
	}
	for _, k := range required {
		raw, ok := obj[k]
		if !ok {
			return invalid(k, "missing")
		}
		if bytes.Equal(raw, []byte("null")) {
			return invalid(k, "null")
		}
	}
	return nil
}

// jsonReason turns an encoding/json error into words without Go's types.
func jsonReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("not JSON: %v at byte %d", se, se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := "a " + te.Type.Kind().String()
		switch te.Type.Kind() {
		case reflect.Map, reflect.Struct:
			want = "an object"
		case reflect.Slice:
			want = "a list"
		case reflect.Int, reflect.Int64:
			want = "an integer"
		case reflect.String:
			want = "a string"
		}
		return fmt.Sprintf("%s where %s belongs", te.Value, want)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// checkTimes finds the time that encoding/json could not parse: its error
// does not say which.
func checkTimes(top map[string]json.RawMessage, rs []map[string]json.RawMessage) error {
	check := func(field string, raw json.RawMessage) error {
		var t time.Time
		if raw == nil || json.Unmarshal(raw, &t) == nil {
			return nil
		}
		return invalid(field, "not an RFC 3339 time: %s", raw)
	}
	for _, k := range []string{"created", "next_attempt"} {
		if err := check(k, top[k]); err != nil {
			return err
		}
	}
	for i, r := range rs {
		if err := check(fmt.Sprintf("recipients[%d].updated", i), r["updated"]); err != nil {
			return err
		}
	}
	return nil
}

// validate applies the rules Encode and Decode share.
func validate(e *Envelope) error {
	if e.Version != Version {
		return invalid("version", "version %d is not known (this program writes %d)", e.Version, Version)
	}
	if !validID(e.ID) {
		return invalid("id", "not a queue id: %q", e.ID)
	}
	if e.From != "" {
		if err := address.Check(e.From); err != nil {
			return invalid("from", "%v", err)
		}
	}
	if len(e.Recipients) == 0 {
		return invalid("recipients", "no recipients")
	}
	for i, r := range e.Recipients {
		if err := validateRecipient(&r); err != nil {
			var ee *EnvelopeError
			if errors.As(err, &ee) {
				ee.Field = "recipients[" + strconv.Itoa(i) + "]." + ee.Field
			}
			return err
		}
	}
	switch e.Body {
	case "", "7BIT", "8BITMIME":
	default:
		return invalid("body", "unknown body type %q", e.Body)
	}
	if e.Size < 0 {
		return invalid("size", "negative")
	}
	switch e.Return {
	case "", "FULL", "HDRS":
	default:
		return invalid("ret", "unknown DSN RET %q", e.Return)
	}
	switch e.ErrorMode {
	case "", "p", "m", "q", "w", "e":
	default:
		return invalid("error_mode", "unknown error mode %q", e.ErrorMode)
	}
	if e.Created.IsZero() {
		return invalid("created", "missing")
	}
	if e.Attempts < 0 {
		return invalid("attempts", "negative")
	}
	if e.UID < 0 {
		return invalid("uid", "negative")
	}
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"created", e.Created}, {"next_attempt", e.NextAttempt}} {
		if err := checkTime(f.name, f.t); err != nil {
			return err
		}
	}
	for _, f := range []struct{ name, s string }{
		{"envid", e.EnvID}, {"message_id", e.MessageID}, {"last_error", e.LastError}, {"user", e.User},
	} {
		if err := checkLine(f.name, f.s); err != nil {
			return err
		}
	}
	return nil
}

func validateRecipient(r *Recipient) error {
	if err := address.Check(r.Addr); err != nil {
		return invalid("addr", "%v", err)
	}
	switch r.State {
	case Pending, Sent, Failed:
	default:
		return invalid("state", "unknown state %q", r.State)
	}
	if r.Code != 0 && (r.Code < 200 || r.Code > 599) {
		return invalid("code", "not an SMTP reply code: %d", r.Code)
	}
	if err := checkLine("reply", r.Reply); err != nil {
		return err
	}
	if err := checkTime("updated", r.Updated); err != nil {
		return err
	}
	// RFC 3461 4.1: NEVER, or any of SUCCESS, FAILURE and DELAY.
	for _, n := range r.Notify {
		switch n {
		case "SUCCESS", "DELAY", "FAILURE":
		case "NEVER":
			if len(r.Notify) > 1 {
				return invalid("notify", "NEVER combined with other values")
			}
		default:
			return invalid("notify", "unknown DSN NOTIFY value %q", n)
		}
	}
	return checkLine("orcpt", r.ORcpt)
}

// checkLine refuses what would break a one-line field or a log line.
func checkLine(field, s string) error {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r', '\n':
			return invalid(field, "contains a line break")
		case 0:
			return invalid(field, "contains a NUL byte")
		}
	}
	return nil
}

// checkTime refuses times that JSON cannot hold (RFC 3339 has 4-digit
// years).
func checkTime(field string, t time.Time) error {
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return invalid(field, "year %d out of range", y)
	}
	return nil
}
