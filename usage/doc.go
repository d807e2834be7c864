// Package usage holds the types of the per-layer access accounting that
// cross package boundaries: the accounting mode (Accounting and its
// parser), a layer's live figures (LayerStats), one entry of its per-file
// profile (FileAccess), and the usage records kept across daemon runs and
// served to cvmfsctl (LayerUsage, ImageUsage, ReportRow, Contents).
//
// fusefs fills them on its request path; metrics, fuseremote, cvmfsctl and
// the profile store read, send or keep them. usage imports nothing of this
// project, so that a client (cvmfsctl) or a store can use the types without
// linking the FUSE filesystem.
package usage
