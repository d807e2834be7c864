// Package config is the daemon's TOML configuration: the keys (Config),
// their defaults (Default, the packages' own where a package owns the
// value), reading and checking a file (Load, Parse, Validate), writing one
// (Encode), and the mapping of the keys to each package's options (one
// method per package).
package config
