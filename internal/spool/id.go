package spool

import (
	"io"

	"relaymail/internal/sysexits"
)

// idLen is the length of a queue id: 80 bits in base32.
const idLen = 16

// crockford is Crockford's base32 alphabet: digits and upper-case letters
// without I, L, O and U, in ASCII order so that ids sort as their numbers.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// validID reports whether s is a queue id. Only valid ids become file
// names, so a caller's id can never name a path outside Dir.
func validID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isCrockford(s[i]) {
			return false
		}
	}
	return true
}

func isCrockford(c byte) bool {
	return c >= '0' && c <= '9' ||
		c >= 'A' && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U'
}

// newID returns a new id: the time in milliseconds (48 bits) and 32 random
// bits. An id made in the same millisecond as the previous one, or when the
// clock went back, reuses the previous time and adds one to the random
// part, so that one Spool's ids sort in the order they were made.
func (s *Spool) newID() (string, error) {
	ms := s.now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	var r uint32
	if ms <= s.lastMS {
		ms = s.lastMS
		r = s.lastRand + 1
		if r == 0 { // the random part wrapped: borrow the next millisecond
			ms++
		}
	} else {
		var b [4]byte
		if _, err := io.ReadFull(s.rand, b[:]); err != nil {
			return "", sysexits.Errorf(sysexits.TempFail, "spool id: read random bytes: %v", err)
		}
		r = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	}
	if ms < 0 || ms >= 1<<48 {
		return "", sysexits.Errorf(sysexits.TempFail, "spool id: clock out of range: %d ms", ms)
	}
	s.lastMS, s.lastRand = ms, r
	return encodeID(uint64(ms), r), nil
}

// encodeID writes the 80 bits ms<<32|r as 16 base32 digits, most
// significant first.
func encodeID(ms uint64, r uint32) string {
	var b [idLen]byte
	lo := uint64(r) | ms<<32 // the low 64 bits
	hi := ms >> 32           // the high 16 bits
	for i := idLen - 1; i >= 0; i-- {
		b[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(b[:])
}

// suffix returns 8 random base32 characters for a temporary file name.
func (s *Spool) suffix() (string, error) {
	var b [5]byte
	s.mu.Lock()
	_, err := io.ReadFull(s.rand, b[:])
	s.mu.Unlock()
	if err != nil {
		return "", sysexits.Errorf(sysexits.TempFail, "spool: read random bytes: %v", err)
	}
	v := uint64(b[0])<<32 | uint64(b[1])<<24 | uint64(b[2])<<16 | uint64(b[3])<<8 | uint64(b[4])
	var out [8]byte
	for i := 7; i >= 0; i-- {
		out[i] = crockford[v&31]
		v >>= 5
	}
	return string(out[:]), nil
}
