package pattern

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	whole, err := io.ReadAll(Reader(100_000))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(whole, []byte("000000000000000\n000000000000016\n")) {
		t.Fatalf("stream starts %q", whole[:32])
	}
	if err := Check(whole, 100_000); err != nil {
		t.Fatalf("whole stream: %v", err)
	}
	corrupt := bytes.Clone(whole)
	corrupt[70_001] = 'x'
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"cut", whole[:65536], "got 65536 bytes, want 100000"},
		{"empty", nil, "got 0 bytes, want 100000"},
		{"corrupt", corrupt, "first difference at offset 70001"},
		{"long", append(bytes.Clone(whole), '0'), "extra bytes from offset 100000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.data, 100_000)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
