// Package custody keeps the FUSE connections of the daemon's layer mounts
// while no daemon serves them, so that running containers never lose a
// layer when the daemon restarts, crashes, is killed or upgraded.
//
// The kernel ends a FUSE connection only when the last descriptor of its
// /dev/fuse file is closed. The custody is a small process of its own
// (cvmfs-snapshotter custody), started by the daemon when none runs, that
// holds a copy of every mount's /dev/fuse descriptor and node journal
// (fusefs.Connection) and does nothing else: it never reads a request.
// While the daemon is down, requests wait in the kernel; the next daemon
// asks the custody for every connection (List) and serves each again
// (fusefs.Manager.Adopt). The daemon keeps its own copies too, so the
// custody may die while the daemon runs (the daemon starts another and
// hands it every connection again); only both down at once ends the mounts.
//
// Protocol: one SOCK_SEQPACKET unix socket, one JSON message per packet,
// descriptors passed with SCM_RIGHTS; only peers of the custody's own uid
// are answered. custody knows fusefs's Connection and nothing of
// containerd.
package custody
