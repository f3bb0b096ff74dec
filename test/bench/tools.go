package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// loadTool reads a status file of setup.sh (see there). It returns the
// key=value pairs, or the reason the program cannot be used.
func loadTool(status string) (map[string]string, string) {
	data, err := os.ReadFile(status)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Sprintf("no %s: run test/bench/setup.sh first (make bench does)", status)
	} else if err != nil {
		return nil, fmt.Sprintf("read %s: %v", status, err)
	}
	kv := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	if kv["ok"] != "yes" {
		why := kv["error"]
		if why == "" {
			why = "setup.sh recorded neither ok nor an error"
		}
		return nil, "setup.sh: " + why
	}
	if _, err := os.Stat(kv["bin"]); err != nil {
		return nil, fmt.Sprintf("binary: %v", err)
	}
	return kv, ""
}

// toolImpl makes the implementation a status file describes.
func toolImpl(name string, k kind, helo string, kv map[string]string, env []string) *impl {
	env = append(append([]string(nil), env...), "LD_LIBRARY_PATH="+kv["ld_library_path"])
	return &impl{name: name, bin: kv["bin"], env: env, kind: k, helo: helo}
}

// dmaConf writes dma's config into the sandbox's private /etc/dma, for
// the target dma sends through next: its one config file serves every
// target, so it is rewritten when the target changes (between benchmarks,
// once the spools are empty: a delivery process reads it when it starts).
//
//	/etc/dma/dma.conf   0644 root  SMARTHOST, PORT, STARTTLS, ...
//	/etc/dma/auth.conf  0640 root:mail  user|host:password
//	/etc/dma/aliases    0644 root  empty
//
// dma drops root privileges to the user mail, so that user owns its spool
// (one per target, in the target's directory) and must be able to reach
// it: the work directory and the target's are made 0711.
type dmaConf struct {
	etc      string // /etc/dma
	uid, gid int    // of the user mail
	cur      *target
}

// newDMAConf checks that dma can work from dir and returns its config
// writer, or the reason it cannot.
func newDMAConf(etc, dir string) (*dmaConf, string) {
	u, err := osuser.Lookup("mail")
	if err != nil {
		return nil, fmt.Sprintf("dma drops root privileges to the user mail: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err.Error()
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return nil, err.Error()
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return nil, fmt.Sprintf("dma runs as the user mail, which cannot reach the work directory through %s (mode %v); pass -dir", d, fi.Mode().Perm())
		}
		if d == "/" {
			break
		}
	}
	if err := os.WriteFile(filepath.Join(etc, "aliases"), nil, 0o644); err != nil {
		return nil, err.Error()
	}
	return &dmaConf{etc: etc, uid: uid, gid: gid}, ""
}

// use points dma at t: SMARTHOST and PORT, STARTTLS with AUTH from
// auth.conf (dma 0.13 offers LOGIN and CRAM-MD5 only), EHLO dmaHelo, a
// spool of its own, and no local delivery (NULLCLIENT). It does nothing if
// dma already sends through t.
func (d *dmaConf) use(t *target) error {
	if d.cur == t {
		return nil
	}
	spool := t.dmaSpool()
	// The target's directory holds only files of mode 0600 besides.
	if err := os.Chmod(t.dir, 0o711); err != nil {
		return err
	}
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return err
	}
	if err := os.Chown(spool, d.uid, d.gid); err != nil {
		return err
	}
	conf := fmt.Sprintf(`# dma.conf written by test/bench for %s:%d
SMARTHOST %s
PORT %d
ALIASES %s
SPOOLDIR %s
AUTHPATH %s
SECURETRANSFER
STARTTLS
MAILNAME %s
NULLCLIENT
`, t.host, t.port, t.host, t.port, filepath.Join(d.etc, "aliases"), spool, filepath.Join(d.etc, "auth.conf"), dmaHelo)
	// auth.conf: "user|smarthost:password", the smarthost spelled as in
	// SMARTHOST.
	auth := fmt.Sprintf("%s|%s:%s\n", authUser, t.host, password)
	if err := writeFile(filepath.Join(d.etc, "auth.conf"), []byte(auth), 0o640, 0, d.gid); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(d.etc, "dma.conf"), []byte(conf), 0o644, 0, 0); err != nil {
		return err
	}
	d.cur = t
	return nil
}

// writeFile replaces path by a file with data, mode and owner, atomically.
func writeFile(path string, data []byte, mode os.FileMode, uid, gid int) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Chown(tmp, uid, gid); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// dmaQueued counts the messages in a dma spool: one queue file, Q<id>, per
// message and recipient (with its M<id> data file), and tmp_ files being
// written.
func dmaQueued(spool string) int {
	entries, _ := os.ReadDir(spool)
	n := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "Q") || strings.HasPrefix(e.Name(), "tmp_") {
			n++
		}
	}
	return n
}

// stripReceived removes the header field dma prepends to every message,
//
//	Received: from root (uid 0)
//		(envelope-from sender@example.com)
//		id ...
//		by dma.bench.test (DragonFly Mail Agent v0.13);
//		<date>
//
// that is the first line and the continuation lines after it, and reports
// whether there was one. Only this one field is removed: the messages sent
// carry no Received field of their own, so a second one would change the
// hash.
func stripReceived(data []byte) ([]byte, bool) {
	if !bytes.HasPrefix(data, []byte("Received: ")) {
		return data, false
	}
	i := 0
	for {
		j := bytes.Index(data[i:], []byte("\r\n"))
		if j < 0 {
			return data, false
		}
		i += j + 2
		if i == len(data) || (data[i] != ' ' && data[i] != '\t') {
			return data[i:], true
		}
	}
}
