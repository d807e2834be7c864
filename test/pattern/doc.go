// Package pattern makes and checks a deterministic byte stream, so a test
// can tell whether output that crossed a container boundary arrived whole,
// in order, and where it was first cut or corrupted.
package pattern
