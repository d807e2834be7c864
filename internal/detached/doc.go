// Package detached starts the daemon's helper processes (the custody, a
// separate FUSE server) so that they outlive it: in a session of their own,
// their output appended to a log file, reaped while the daemon runs.
package detached
