package main

// B4 measures the peak resident set size of every process of an
// implementation that takes part in sending one message: the process the
// caller started and whatever it starts (relaymail's detached --drain
// child, dma's delivery process, which outlive the caller). B6 measures
// the same for listing the queue and running it, and also the most memory
// the processes taking part held together at one moment.
//
// # Method
//
// A poller walks /proc every pollEvery. A process takes part if
//
//   - it is the started process, or its parent takes part (followed as
//     processes appear, before a detached child is re-parented), or
//   - its executable is the implementation's binary (the same file), it
//     started no earlier than the started process, and it is in the
//     benchmark's mount namespace (the sandbox's own: processes of other
//     runs on the machine are not; without the sandbox this test is void).
//
// For each such process the poller keeps the largest VmHWM ("peak resident
// set size") of /proc/<pid>/status; the kernel keeps that high-water mark
// itself, so polling misses only growth in a process's last pollEvery.
// The poller stops once every process it found has exited.
//
// At each poll it also adds up the VmRSS (resident now) of the processes
// taking part that are alive, and keeps the largest sum: the memory a
// queue run of many processes (dma forks one per message) holds at once.
// Pages the processes share, such as the program's text and its
// libraries, count once per process, as in top's RES column; a process
// that lives between two polls adds nothing to a sum. A poll over many
// processes takes longer than pollEvery: the poller then waits as long as
// the poll took, so that it uses at most about half a CPU.
//
// For the started process the kernel's own figure is a cross-check:
// ru_maxrss from wait4 (ProcessState.SysUsage). It is an upper bound only:
// Go starts children with vfork, so until exec the child shares the
// benchmark's memory, and the kernel carries that high-water mark into the
// child's ru_maxrss at exec. It is exact when it exceeds the benchmark's
// own VmHWM.

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	pollEvery = 5 * time.Millisecond
	// pollLinger bounds the wait for the processes found to exit once
	// the message has arrived and the spool is empty.
	pollLinger = 10 * time.Second
)

// procPeak is one process that took part, and its peak.
type procPeak struct {
	pid  int
	what string // its command line, shortened
	kib  int64  // the largest VmHWM seen
}

// watcher polls /proc for the processes of one invocation.
type watcher struct {
	root      int
	rootStart uint64 // clock ticks after boot
	bin       os.FileInfo
	mntNS     string
	seen      map[int]bool // pid -> takes part (decided once per pid)
	peaks     map[int]*procPeak
	stop      chan struct{}
	done      chan []procPeak
	lingered  bool
	sumKiB    int64 // the largest sum of VmRSS at one poll; read after finish
}

// watch starts polling for the process tree of pid, started from bin.
func watch(pid int, bin string) *watcher {
	w := &watcher{
		root:  pid,
		seen:  map[int]bool{},
		peaks: map[int]*procPeak{},
		stop:  make(chan struct{}),
		done:  make(chan []procPeak, 1),
	}
	w.bin, _ = os.Stat(bin)
	w.mntNS, _ = os.Readlink("/proc/self/ns/mnt")
	if _, start, ok := procStat(pid); ok {
		w.rootStart = start
	}
	go w.run()
	return w
}

// finish tells the poller that the invocation is over, waits until every
// process found has exited (at most pollLinger), and returns their peaks,
// largest first.
func (w *watcher) finish() []procPeak {
	close(w.stop)
	return <-w.done
}

// sumPeakKiB returns the largest sum of the VmRSS of the processes alive
// at one poll, in KiB. Call it after finish.
func (w *watcher) sumPeakKiB() int64 { return w.sumKiB }

func (w *watcher) run() {
	var deadline time.Time
	for {
		began := time.Now()
		alive := w.poll()
		select {
		case <-w.stop:
			if deadline.IsZero() {
				deadline = time.Now().Add(pollLinger)
			}
		default:
		}
		if !deadline.IsZero() && (alive == 0 || time.Now().After(deadline)) {
			w.lingered = alive > 0
			var out []procPeak
			for _, p := range w.peaks {
				out = append(out, *p)
			}
			slices.SortFunc(out, func(a, b procPeak) int { return int(b.kib - a.kib) })
			w.done <- out
			return
		}
		time.Sleep(max(pollEvery, time.Since(began)))
	}
}

// poll reads the peaks of the processes taking part and returns how many
// are alive.
func (w *watcher) poll() int {
	d, err := os.Open("/proc")
	if err != nil {
		return 0
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	alive := 0
	var sum int64
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		part, known := w.seen[pid]
		if !known {
			part = w.takesPart(pid)
			w.seen[pid] = part
		}
		if !part {
			continue
		}
		kib, rss, ok := vmStatus(pid)
		if !ok {
			continue // exited: a zombie has no memory left
		}
		alive++
		sum += rss
		p := w.peaks[pid]
		if p == nil {
			p = &procPeak{pid: pid}
			w.peaks[pid] = p
		}
		p.kib = max(p.kib, kib)
		// Read each time: a child seen between fork and exec still
		// shows its parent's command line.
		if what := cmdline(pid); what != "" {
			p.what = what
			if pid == w.root {
				p.what += " (the caller)"
			}
		}
	}
	w.sumKiB = max(w.sumKiB, sum)
	return alive
}

// takesPart decides whether pid belongs to the invocation (see the top of
// the file).
func (w *watcher) takesPart(pid int) bool {
	if pid == w.root {
		return true
	}
	ppid, start, ok := procStat(pid)
	if !ok {
		return false
	}
	if w.seen[ppid] {
		return true
	}
	if w.bin == nil || start < w.rootStart {
		return false
	}
	exe, err := os.Stat(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || !os.SameFile(exe, w.bin) {
		return false
	}
	ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	return ns == w.mntNS
}

// procStat returns the parent and start time of pid, from
// /proc/<pid>/stat.
func procStat(pid int) (ppid int, start uint64, ok bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis. They start with field 3, state;
	// ppid is field 4 and starttime field 22.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return 0, 0, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	return ppid, start, err1 == nil && err2 == nil
}

// vmStatus returns the peak (VmHWM) and current (VmRSS) resident set size
// of pid in KiB, read in one pass, and false once it has exited.
func vmStatus(pid int) (hwm, rss int64, ok bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	var okHWM, okRSS bool
	sc := bufio.NewScanner(f)
	for sc.Scan() && !(okHWM && okRSS) {
		if v, found := strings.CutPrefix(sc.Text(), "VmHWM:"); found {
			hwm, okHWM = parseKiB(v)
		} else if v, found := strings.CutPrefix(sc.Text(), "VmRSS:"); found {
			rss, okRSS = parseKiB(v)
		}
	}
	return hwm, rss, okHWM && okRSS
}

// parseKiB parses the value of a /proc status line, "   123 kB".
func parseKiB(v string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
	return n, err == nil
}

// statusKiB reads a "Key:  123 kB" line of a /proc status file.
func statusKiB(path, key string) (int64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			return parseKiB(v)
		}
	}
	return 0, false
}

// cmdline returns pid's program name and its arguments but paths and
// addresses, or "" once it has exited.
func cmdline(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
	if len(args) == 0 || args[0] == "" {
		return "" // a zombie
	}
	args[0] = filepath.Base(args[0])
	var keep []string
	for _, a := range args {
		// The config path and the addresses say nothing about the role.
		if strings.Contains(a, "/") || strings.Contains(a, "@") {
			continue
		}
		keep = append(keep, a)
	}
	return strings.Join(keep, " ")
}
