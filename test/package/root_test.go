//go:build interop

package pkgtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A root is a throwaway copy of this machine: an overlay whose lower layer
// is / and whose writes go to a tmpfs, mounted in a private mount namespace
// that a sleeping holder process keeps alive. Packages are installed in it
// with the real apt-get and dpkg, services run in it with chroot, and the
// machine itself is never changed. It shares the machine's network, so
// servers in one root and clients in another meet on 127.0.0.1.
//
// Its /dev is a tmpfs with only the harmless devices bound in, so that a
// syslog daemon in it creates its own /dev/log; /tmp and /run are fresh
// tmpfs; /var/cache/apt/archives is a directory of the test tree, so that
// packages are downloaded once and not per run.
type root struct {
	t      *testing.T
	name   string
	merged string // the overlay's mount point, as the namespace sees it
	holder *exec.Cmd
	ns     string // the namespace, as /proc/<pid>/ns/mnt names it
}

const holderScript = `set -e
d=$1 cache=$2
mount -t tmpfs tmpfs "$d"
mkdir -p "$d/up" "$d/work" "$d/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$d/up,workdir=$d/work" "$d/root"
r=$d/root
mount -t proc proc "$r/proc"
mount -t tmpfs -o mode=755 tmpfs "$r/dev"
for n in null zero full random urandom tty; do
	touch "$r/dev/$n"
	mount --bind "/dev/$n" "$r/dev/$n"
done
mkdir -p "$r/dev/pts" "$r/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$r/dev/pts"
ln -s pts/ptmx "$r/dev/ptmx"
ln -s /proc/self/fd "$r/dev/fd"
ln -s /proc/self/fd/0 "$r/dev/stdin"
ln -s /proc/self/fd/1 "$r/dev/stdout"
ln -s /proc/self/fd/2 "$r/dev/stderr"
mount -t tmpfs tmpfs "$r/dev/shm"
mount -t tmpfs tmpfs "$r/tmp"
chmod 1777 "$r/tmp"
mount -t tmpfs -o mode=755 tmpfs "$r/run"
mkdir -p "$r/run/lock"
chmod 1777 "$r/run/lock"
mkdir -p "$r/var/cache/apt/archives"
mount --bind "$cache" "$r/var/cache/apt/archives"
# No service may start from a maintainer script: the tests start what they need.
rm -f "$r/etc/apt/apt.conf.d/docker-clean"
printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
chmod 755 "$r/usr/sbin/policy-rc.d"
echo ready
exec sleep 86400
`

// newRoot makes a root. cache is the directory that becomes its
// /var/cache/apt/archives.
func newRoot(t *testing.T, name, cache string) *root {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(cache, "partial"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := &root{t: t, name: name, merged: filepath.Join(dir, "root")}
	r.holder = exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", holderScript, "sh", dir, cache)
	var stderr bytes.Buffer
	r.holder.Stderr = &stderr
	out, err := r.holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.holder.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line == "ready\n"
	}()
	select {
	case ok := <-ready:
		if !ok {
			r.holder.Wait()
			t.Fatalf("root %s: the overlay could not be set up: %s", name, stderr.String())
		}
	case <-time.After(30 * time.Second):
		r.holder.Process.Kill()
		r.holder.Wait()
		t.Fatalf("root %s: not ready after 30 s: %s", name, stderr.String())
	}
	r.ns, err = os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", r.holder.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	return r
}

// close kills every process in the root's namespace (the holder and any
// daemon started in it), which unmounts the overlay and frees its tmpfs.
func (r *root) close() {
	for range 3 {
		ents, _ := os.ReadDir("/proc")
		killed := 0
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && ns == r.ns {
				syscall.Kill(pid, syscall.SIGKILL)
				killed++
			}
		}
		if killed == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.holder.Wait()
}

// path is where the machine sees a file of the root.
func (r *root) path(p string) string {
	return fmt.Sprintf("/proc/%d/root%s%s", r.holder.Process.Pid, r.merged, p)
}

// env is the environment of every command in a root.
var rootEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root", "USER=root", "LOGNAME=root", "LANG=C.UTF-8", "TERM=dumb",
	"DEBIAN_FRONTEND=noninteractive",
}

// command returns the command that runs script with sh in the root, as
// root, with args as $1...
func (r *root) command(ctx context.Context, script string, args ...string) *exec.Cmd {
	argv := []string{"-t", strconv.Itoa(r.holder.Process.Pid), "-m", "chroot", r.merged, "/usr/bin/env", "-i"}
	argv = append(argv, rootEnv...)
	argv = append(argv, "/bin/sh", "-c", script, "sh")
	return exec.CommandContext(ctx, "nsenter", append(argv, args...)...)
}

// run runs script in the root with stdin, within five minutes, and returns
// its combined output.
func (r *root) run(stdin, script string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := r.command(ctx, script, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%v (killed after 5 minutes)", err)
	}
	return string(out), err
}

// must is run that fails the test on a non-zero exit.
func (r *root) must(stdin, script string, args ...string) string {
	r.t.Helper()
	out, err := r.run(stdin, script, args...)
	if err != nil {
		r.t.Fatalf("root %s: %s: %v\n%s", r.name, firstLine(script), err, out)
	}
	return out
}

// start runs script in the background; the root's close stops it. Its
// output goes to the returned buffer, to be read once it has exited.
func (r *root) start(script string, args ...string) *exec.Cmd {
	r.t.Helper()
	cmd := r.command(context.Background(), script, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	go cmd.Wait()
	return cmd
}

// writeFile writes a file into the root (its parent must exist).
func (r *root) writeFile(p string, data []byte, mode os.FileMode) {
	r.t.Helper()
	if err := os.WriteFile(r.path(p), data, mode); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Chmod(r.path(p), mode); err != nil {
		r.t.Fatal(err)
	}
}

// aptInstall installs packages (paths of .deb files too) with apt-get,
// without recommends, updating the package lists first when they do not
// know a package, and returns apt-get's output.
func (r *root) aptInstall(pkgs ...string) string {
	r.t.Helper()
	const install = `cd /tmp && apt-get -o APT::Sandbox::User=root -o Dpkg::Use-Pty=0 install -y -q --no-install-recommends "$@"`
	start := time.Now()
	out, err := r.run("", install, pkgs...)
	if err != nil && (strings.Contains(out, "Unable to locate package") || strings.Contains(out, "no installation candidate") ||
		strings.Contains(out, "Failed to fetch") || strings.Contains(out, "404")) {
		r.t.Logf("root %s: apt-get update, as the lists did not know %v", r.name, pkgs)
		r.must("", "apt-get -o APT::Sandbox::User=root update -q")
		out, err = r.run("", install, pkgs...)
	}
	if err != nil {
		r.t.Fatalf("root %s: apt-get install %v: %v\n%s", r.name, pkgs, err, out)
	}
	r.t.Logf("root %s: apt-get install %s: %v", r.name, strings.Join(pkgs, " "), time.Since(start).Round(time.Millisecond))
	return out
}

// waitPort waits until something accepts connections on 127.0.0.1:port.
func waitPort(t *testing.T, port int, what func() string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := dialTCP(port)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on 127.0.0.1:%d after 60 s: %v\n%s", port, err, what())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}
