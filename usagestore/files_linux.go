package usagestore

import "golang.org/x/sys/unix"

// noFollow makes an open fail on a symlink.
const noFollow = unix.O_NOFOLLOW
