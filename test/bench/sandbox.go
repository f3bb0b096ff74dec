package main

// The sandbox gives the benchmark a mount namespace and a network
// namespace of its own, without changing anything on the machine.
//
// dma reads its config from the compiled-in /etc/dma/dma.conf: it has no
// flag and no environment variable for another path (its man page and the
// strings in the binary agree). Everything else it uses is set in that
// file (SPOOLDIR, AUTHPATH, ALIASES, MAILNAME), so /etc/dma is the one
// fixed path the benchmark must provide. It does so only inside its own
// mount namespace:
//
//   - the benchmark re-executes itself (as root) with CLONE_NEWNS and
//     CLONE_NEWNET, and the parent only waits and passes on the exit
//     status, stdout and stderr;
//   - the child makes every mount private (mount --make-rprivate /), so
//     nothing it mounts propagates to the machine, and brings lo up in its
//     new network namespace (ip link set lo up);
//   - it mounts a small tmpfs on a directory the parent made for it;
//   - when the machine has no /etc/dma (dma is not installed), it mounts an
//     overlay on /etc: the machine's /etc as the lower layer, read-only in
//     effect, and a directory of the tmpfs as the upper one holding an
//     empty dma/. Mounts below /etc (a container's /etc/hosts, say) are
//     bound back on top. Creating /etc/dma on the machine is not allowed,
//     and a tmpfs over all of /etc would hide it;
//   - it bind-mounts a directory of the tmpfs on /etc/dma (the machine's
//     own, if dma is installed, stays untouched underneath).
//
// dma's spool is not a fixed path (SPOOLDIR), so it lives in the work
// directory next to relaymail's spools, on the same file system: no mount
// over /var/spool/dma is needed. The namespaces end with the last process
// in them; the parent then removes the (empty) directory it made.
//
// The network namespace is also where test/bench/netem's link will live:
// its TUN device and second namespace then belong to the benchmark alone.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// sandboxEnv marks the benchmark re-executed inside its sandbox. Its value
// is a directory the parent made and removes: the child mounts its tmpfs
// on <dir>/mnt and writes why it failed, if it does, to <dir>/why.
const sandboxEnv = "RELAYMAIL_BENCH_SANDBOX"

// exitNoSandbox is the child's exit status when it could not set up the
// sandbox, before measuring anything. The parent then runs the benchmark
// itself, without dma.
const exitNoSandbox = 3

// sandbox is what the re-executed benchmark set up.
type sandbox struct {
	etcDMA string // "/etc/dma", private to the sandbox
	method string // how, for the report
}

// reexec runs exe with args in new mount and network namespaces, with env
// plus the sandbox marker, and returns its exit status. It returns an error
// when the sandbox could not be made (the child could not start, or exited
// with exitNoSandbox); the caller then runs the benchmark without it.
func reexec(exe string, args, env []string, parent string, stdout, stderr io.Writer) (int, error) {
	dir, err := os.MkdirTemp(parent, "relaymail-bench-sandbox-")
	if err != nil {
		return 0, err
	}
	// Removed once the child is gone; its tmpfs went with its namespace.
	defer os.RemoveAll(dir)
	if err := os.Mkdir(filepath.Join(dir, "mnt"), 0o755); err != nil {
		return 0, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(slices.Clone(env), sandboxEnv+"="+dir)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET}
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case !errors.As(err, &ee):
		return 0, fmt.Errorf("start %s in new namespaces: %v", exe, err)
	case ee.ExitCode() == exitNoSandbox:
		why, _ := os.ReadFile(filepath.Join(dir, "why"))
		return 0, errors.New(strings.TrimSpace(string(why)))
	case ee.ExitCode() < 0:
		// Killed by a signal (an interrupt reaches both processes):
		// measuring again without the sandbox is not wanted.
		fmt.Fprintf(stderr, "bench: the sandboxed benchmark ended: %v\n", err)
		return 1, nil
	}
	return ee.ExitCode(), nil
}

// sandboxFailed records, in the child, why the sandbox could not be made.
func sandboxFailed(dir string, err error) int {
	os.WriteFile(filepath.Join(dir, "why"), []byte(err.Error()+"\n"), 0o600)
	return exitNoSandbox
}

// enterSandbox sets up the mounts and the loopback interface in the
// namespaces the child was started in (see the comment at the top). dir is
// the marker's value. On error the namespaces may be half set up; the
// child must then exit without measuring.
func enterSandbox(dir string) (*sandbox, error) {
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("make mounts private: %v", err)
	}
	if err := loUp(); err != nil {
		return nil, err
	}
	mnt := filepath.Join(dir, "mnt")
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755,size=16m"); err != nil {
		return nil, fmt.Errorf("mount tmpfs on %s: %v", mnt, err)
	}
	sb := &sandbox{etcDMA: "/etc/dma"}
	fi, err := os.Stat(sb.etcDMA)
	switch {
	case err == nil && fi.IsDir():
		sb.method = "the benchmark bind-mounted a private tmpfs directory on the machine's /etc/dma, in its own mount namespace"
	case errors.Is(err, fs.ErrNotExist):
		if err := overlayEtc(mnt); err != nil {
			return nil, err
		}
		sb.method = "the machine has none, so the benchmark mounted an overlay on /etc (lower: the machine's /etc; upper: a private tmpfs adding an empty dma/) " +
			"and bind-mounted a private tmpfs directory on /etc/dma, all in its own mount namespace"
	case err == nil:
		return nil, fmt.Errorf("%s is not a directory", sb.etcDMA)
	default:
		return nil, err
	}
	private := filepath.Join(mnt, "etc-dma")
	if err := os.Mkdir(private, 0o755); err != nil {
		return nil, err
	}
	if err := syscall.Mount(private, sb.etcDMA, "", syscall.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("bind-mount %s on %s: %v", private, sb.etcDMA, err)
	}
	return sb, nil
}

// loUp brings the loopback interface of the new network namespace up: it
// starts down, and the smarthosts listen on 127.0.0.1.
func loUp() error {
	ip := "/usr/sbin/ip"
	if _, err := os.Stat(ip); err != nil {
		ip = "/sbin/ip"
	}
	out, err := exec.Command(ip, "link", "set", "lo", "up").CombinedOutput()
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf("%s link set lo up: %v", ip, err)
	if o := strings.TrimSpace(string(out)); o != "" {
		msg += ": " + o
	}
	if errors.Is(err, fs.ErrNotExist) {
		msg += " (hint: apt-get install iproute2)"
	}
	return errors.New(msg)
}

// overlayEtc mounts an overlay on /etc whose upper layer, in the tmpfs at
// mnt, adds an empty directory dma. Mounts below /etc are bound aside first
// and back on top after, since the overlay would hide them.
func overlayEtc(mnt string) error {
	if strings.ContainsAny(mnt, ",:\\") {
		return fmt.Errorf("cannot use %q in overlay options", mnt)
	}
	upper, work, keep := filepath.Join(mnt, "upper"), filepath.Join(mnt, "work"), filepath.Join(mnt, "keep")
	for _, d := range []string{filepath.Join(upper, "dma"), work, keep} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	subs, err := submounts("/etc")
	if err != nil {
		return err
	}
	held := make([]string, len(subs))
	for i, m := range subs {
		held[i] = filepath.Join(keep, strconv.Itoa(i))
		if err := mountpoint(m, held[i]); err != nil {
			return err
		}
		if err := syscall.Mount(m, held[i], "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s aside: %v", m, err)
		}
	}
	opts := "lowerdir=/etc,upperdir=" + upper + ",workdir=" + work
	if err := syscall.Mount("overlay", "/etc", "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay on /etc: %v", err)
	}
	for i, m := range subs {
		if err := syscall.Mount(held[i], m, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s back: %v", m, err)
		}
	}
	return nil
}

// mountpoint creates at path an empty file or directory, like src, for a
// bind mount of src.
func mountpoint(src, path string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return os.Mkdir(path, 0o755)
	}
	return os.WriteFile(path, nil, 0o644)
}

// submounts lists the mount points strictly below dir, outermost only
// (a recursive bind takes the ones below them along), from
// /proc/self/mountinfo.
func submounts(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var all []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		// Field 5 is the mount point, with space, tab, newline and
		// backslash written as octal escapes.
		p := unescapeMountinfo(fields[4])
		if strings.HasPrefix(p, dir+"/") && !slices.Contains(all, p) {
			all = append(all, p)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	slices.Sort(all) // parents sort before their children
	var outer []string
	for _, p := range all {
		if !slices.ContainsFunc(outer, func(o string) bool { return strings.HasPrefix(p, o+"/") }) {
			outer = append(outer, p)
		}
	}
	return outer, nil
}

func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
