// Package beneath opens a path relative to a directory descriptor without
// ever leaving that directory: no symlink is followed on the way (nor at
// the end), no ".." component is accepted, an absolute path is refused.
// The directory's content is hostile (a layer, a DUCC repository): the
// check is made by the kernel at the open (openat2 with RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS), or one component at a time where openat2 is
// missing or the path is longer than PATH_MAX, never by an lstat of the path
// before it is opened (which the tree could change in between).
//
// It is a leaf: it knows nothing of layers, mounts or snapshots.
package beneath
