// Package testutil holds helpers that unit, root and end-to-end tests share:
// requirement gates (RequiresRoot, RequiresFUSE, RequiresBinary) that skip a
// test naming what is missing, and fail it instead when CI=true;
// deterministic layer tarballs (Layer, Entry and its constructors); and a
// mount sweeper for temporary directories.
//
// Production code never imports it.
package testutil
