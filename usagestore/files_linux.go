package usagestore

import "golang.org/x/sys/unix"

// noFollow makes an open fail on a symlink; nonBlock keeps an open of a
// FIFO from waiting for a writer.
const (
	noFollow = unix.O_NOFOLLOW
	nonBlock = unix.O_NONBLOCK
)
