//go:build linux

package mountutil

// IsMountedMountinfo exposes isMountedMountinfo to the external tests.
var IsMountedMountinfo = isMountedMountinfo
