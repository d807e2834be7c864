// Package cache holds the attribute and entry cache that the FUSE layer
// mounts share: a bounded LRU (github.com/hashicorp/golang-lru/v2) keyed by
// layer digest and path inside the layer, holding positive entries (the
// attributes to present) and negative ones (the name does not exist).
//
// Layers are immutable, so entries never go stale and are never
// invalidated; the bound only limits memory. One cache serves every mount of
// every layer: two mounts of the same digest share their entries.
//
// The package stores its own Attr type, not go-fuse's, does no I/O, never
// logs and counts nothing: the FUSE layer counts hits and misses per layer.
package cache
