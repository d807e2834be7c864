package snapshot

import "github.com/containerd/errdefs"

// errAlreadyExists is the answer of the remote path: containerd treats it
// as "the target snapshot is ready, skip fetch and apply".
var errAlreadyExists = errdefs.ErrAlreadyExists

func isNotFound(err error) bool { return errdefs.IsNotFound(err) }
