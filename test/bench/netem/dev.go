package netem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Everything in this file acts on the network namespace of the calling
// thread: a TUN device is created in the namespace of the thread that opens
// /dev/net/tun, and ioctls and netlink requests act on the namespace of the
// thread that made their socket.

// ifreq is the kernel's struct ifreq: an interface name and a union that
// holds flags, an index or an address. 24 bytes is the union's largest
// size, on 64-bit systems.
type ifreq struct {
	name [syscall.IFNAMSIZ]byte
	data [24]byte
}

func newIfreq(name string) *ifreq {
	var r ifreq
	copy(r.name[:syscall.IFNAMSIZ-1], name)
	return &r
}

func ioctl(fd int, req uintptr, r *ifreq) error {
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(r)))
	if errno != 0 {
		return errno
	}
	return nil
}

// needsRoot adds a hint to a permission error.
func needsRoot(err error) error {
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("%w (needs root)", err)
	}
	return err
}

// createTUN creates TUN device name with address addr/prefixLen and brings
// it up. Packets are read and written without a packet-information header
// (IFF_NO_PI); the device disappears when the returned file is closed.
func createTUN(name, addr string) (*os.File, error) {
	f, err := openTUN(name)
	if err != nil {
		return nil, fmt.Errorf("netem: create TUN device %s: %w", name, err)
	}
	if err := configure(name, addr); err != nil {
		f.Close()
		return nil, fmt.Errorf("netem: configure TUN device %s: %w", name, err)
	}
	return f, nil
}

func openTUN(name string) (*os.File, error) {
	fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/dev/net/tun", Err: needsRoot(err)}
	}
	r := newIfreq(name)
	binary.NativeEndian.PutUint16(r.data[:], syscall.IFF_TUN|syscall.IFF_NO_PI)
	if err := ioctl(fd, syscall.TUNSETIFF, r); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("ioctl TUNSETIFF: %w", needsRoot(err))
	}
	// A non-blocking descriptor goes to Go's poller, so Close interrupts a
	// blocked Read.
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// configure gives device name the address addr/prefixLen and brings it up.
func configure(name, addr string) error {
	ip := net.ParseIP(addr).To4()
	if ip == nil {
		return fmt.Errorf("bad IPv4 address %q", addr)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	r := newIfreq(name)
	if err := ioctl(fd, syscall.SIOCGIFINDEX, r); err != nil {
		return fmt.Errorf("ioctl SIOCGIFINDEX: %w", err)
	}
	index := binary.NativeEndian.Uint32(r.data[:])
	if err := addAddr(index, ip, prefixLen); err != nil {
		return fmt.Errorf("add address %s/%d: %w", addr, prefixLen, needsRoot(err))
	}
	return linkUp(name)
}

// linkUp sets IFF_UP on device name unless it is set already.
func linkUp(name string) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	r := newIfreq(name)
	if err := ioctl(fd, syscall.SIOCGIFFLAGS, r); err != nil {
		return fmt.Errorf("ioctl SIOCGIFFLAGS: %w", err)
	}
	flags := binary.NativeEndian.Uint16(r.data[:])
	if flags&syscall.IFF_UP != 0 {
		return nil
	}
	binary.NativeEndian.PutUint16(r.data[:], flags|syscall.IFF_UP)
	if err := ioctl(fd, syscall.SIOCSIFFLAGS, r); err != nil {
		return fmt.Errorf("ioctl SIOCSIFFLAGS: %w", needsRoot(err))
	}
	return nil
}

// addAddr does what "ip addr add ip/prefix dev N" does, N being the
// device with index: an RTM_NEWADDR request over rtnetlink. The kernel adds
// the prefix route with it.
func addAddr(index uint32, ip net.IP, prefix uint8) error {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)

	ne := binary.NativeEndian
	msg := make([]byte, 0, 64)
	// struct nlmsghdr; the length is filled in last.
	msg = ne.AppendUint32(msg, 0)
	msg = ne.AppendUint16(msg, syscall.RTM_NEWADDR)
	msg = ne.AppendUint16(msg, syscall.NLM_F_REQUEST|syscall.NLM_F_ACK|syscall.NLM_F_CREATE|syscall.NLM_F_EXCL)
	msg = ne.AppendUint32(msg, 1) // sequence number
	msg = ne.AppendUint32(msg, 0) // port id: the kernel
	// struct ifaddrmsg
	msg = append(msg, syscall.AF_INET, prefix, 0, syscall.RT_SCOPE_UNIVERSE)
	msg = ne.AppendUint32(msg, index)
	// IFA_LOCAL and IFA_ADDRESS both the local address: not point-to-point.
	for _, typ := range []uint16{syscall.IFA_LOCAL, syscall.IFA_ADDRESS} {
		msg = ne.AppendUint16(msg, 4+4) // struct rtattr + IPv4 address
		msg = ne.AppendUint16(msg, typ)
		msg = append(msg, ip.To4()...)
	}
	ne.PutUint32(msg, uint32(len(msg)))

	if err := syscall.Sendto(fd, msg, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return fmt.Errorf("send netlink request: %w", err)
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("read netlink reply: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("parse netlink reply: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type != syscall.NLMSG_ERROR || m.Header.Seq != 1 {
				continue
			}
			if len(m.Data) < 4 {
				return errors.New("short netlink acknowledgement")
			}
			// struct nlmsgerr: a negative errno, or 0 for success.
			if code := int32(ne.Uint32(m.Data)); code != 0 {
				return syscall.Errno(-code)
			}
			return nil
		}
	}
}
