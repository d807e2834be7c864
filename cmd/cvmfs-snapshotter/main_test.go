package main

import (
	"strings"
	"testing"
)

func TestFlags(t *testing.T) {
	var out strings.Builder
	f, err := parseFlags([]string{"--address", "/tmp/s.sock", "--root=/tmp/r", "--log-level", "debug", "--config", "c.toml"}, &out)
	if err != nil || f.address != "/tmp/s.sock" || f.root != "/tmp/r" || f.logLevel != "debug" || f.config != "c.toml" {
		t.Fatalf("parseFlags = %+v, %v", f, err)
	}
	f, err = parseFlags(nil, &out)
	if err != nil || f.address != defaultAddress || f.root != defaultRoot {
		t.Fatalf("defaults = %+v, %v", f, err)
	}
	out.Reset()
	if _, err := parseFlags([]string{"--help"}, &out); err == nil {
		t.Fatal("--help must stop")
	}
	for _, flag := range []string{"--address", "--config", "--log-level", "--root", "--version"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("--help does not show %s:\n%s", flag, out.String())
		}
	}
	if _, err := parseFlags([]string{"extra"}, &out); err == nil {
		t.Fatal("stray arguments must be an error")
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9783": true, "[::1]:9783": true, "localhost:1": true,
		"0.0.0.0:9783": false, ":9783": false, "10.0.0.1:80": false, "garbage": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
