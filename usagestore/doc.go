// Package usagestore keeps the daemon's usage records on disk, under its
// root, so that a study of which files workloads read can run for days
// across daemon restarts and crashes:
//
//   - per layer, the cumulative figures and merged per-file profile of every
//     FUSE session (profiles/<hex>.json, written atomically at each flush:
//     periodically, around every unmount, and at Close);
//   - per image, its layers as unpacked, which were served from the layer
//     store and why the others were pulled (images.json);
//   - per layer, the files and bytes it holds in the repository, counted
//     once in the background when first reported, under the store's
//     lifetime (contents.json; layers are immutable).
//
// Each kind is kept by a type of its own, under its own lock (profiles,
// images, contents); Store opens, flushes and closes them together.
//
// It reads live figures from a Source (the FUSE manager, in this process or
// a separate FUSE server) and serves the records as JSON (ProfileHandler,
// ImagesHandler, MissingHandler, ReportHandler; adminapi gives them their
// routes). It knows nothing of FUSE, containerd or the repository layout: the daemon
// gives it a Source, the layer events and a function counting a layer's
// contents. Every file it reads is hostile input: a corrupt, foreign or
// oversized record is logged and ignored, and file names are built only
// from validated sha256 digests, never from profile paths or image names.
package usagestore
