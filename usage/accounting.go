package usage

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// Accounting selects how a mount serves reads and what it counts.
type Accounting int

const (
	// AccountOpen keeps kernel passthrough on: every open reaches the
	// daemon and is counted, reads bypass it, so bytes are counted as the
	// sizes of the files opened.
	AccountOpen Accounting = iota
	// AccountBytes turns passthrough off so that every open and every read
	// not served from the page cache reaches the daemon and is counted
	// exactly; the page cache is kept across opens (FOPEN_KEEP_CACHE).
	AccountBytes
	// AccountReads costs no round trip per open: the mount answers the
	// kernel's first OPEN with ENOSYS (FUSE_NO_OPEN_SUPPORT), after which
	// the kernel opens files itself and keeps their pages across opens.
	// The daemon serves each file's content when it is first read (and
	// again only if the page cache dropped it) and counts those fetches
	// and the exact bytes served: the set of files read and their bytes are
	// exact, the number of opens is not seen. The default.
	AccountReads
)

// DefaultAccounting is the mode used when none is given.
const DefaultAccounting = AccountReads

// String returns "open", "bytes" or "reads".
func (a Accounting) String() string {
	switch a {
	case AccountOpen:
		return "open"
	case AccountBytes:
		return "bytes"
	case AccountReads:
		return "reads"
	default:
		return fmt.Sprintf("Accounting(%d)", int(a))
	}
}

// MarshalText returns the mode's name, for configuration files and JSON.
func (a Accounting) MarshalText() ([]byte, error) {
	if !a.Valid() {
		return nil, fmt.Errorf("unknown accounting mode %d: %w", int(a), errdefs.ErrInvalidArgument)
	}
	return []byte(a.String()), nil
}

// UnmarshalText parses a mode name as ParseAccounting does.
func (a *Accounting) UnmarshalText(b []byte) error {
	v, err := ParseAccounting(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Valid reports whether a is one of the three modes.
func (a Accounting) Valid() bool {
	return a == AccountOpen || a == AccountBytes || a == AccountReads
}

// ParseAccounting parses "reads", "open" and "bytes" ("" is
// DefaultAccounting). Anything else returns an error wrapping
// errdefs.ErrInvalidArgument.
func ParseAccounting(s string) (Accounting, error) {
	switch s {
	case "":
		return DefaultAccounting, nil
	case "open":
		return AccountOpen, nil
	case "bytes":
		return AccountBytes, nil
	case "reads":
		return AccountReads, nil
	default:
		return 0, fmt.Errorf("accounting mode %q is not \"reads\", \"open\" or \"bytes\": %w", s, errdefs.ErrInvalidArgument)
	}
}
