// Package faults injects layer-store faults under the snapshotter and its
// FUSE layer filesystem, in process: a layer deleted while mounted (as after
// DUCC garbage collection), a store that hangs past the lookup timeout, and
// a store that answers EIO. The store is a FUSE loopback with switches
// (faultfs), mounted where the CVMFS repository would be.
package faults
