package usage

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseAccounting(t *testing.T) {
	for in, want := range map[string]Accounting{"": AccountReads, "reads": AccountReads, "open": AccountOpen, "bytes": AccountBytes} {
		if got, err := ParseAccounting(in); err != nil || got != want {
			t.Errorf("ParseAccounting(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseAccounting("files"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ParseAccounting accepted an unknown mode: %v", err)
	}
	b, err := json.Marshal(LayerStats{Accounting: AccountBytes})
	if err != nil || !strings.Contains(string(b), `"Accounting":"bytes"`) {
		t.Errorf("LayerStats JSON = %s, %v", b, err)
	}
	var a Accounting
	if err := a.UnmarshalText([]byte("bytes")); err != nil || a != AccountBytes {
		t.Errorf("UnmarshalText = %v, %v", a, err)
	}
	if _, err := Accounting(7).MarshalText(); !errdefs.IsInvalidArgument(err) {
		t.Errorf("MarshalText of an unknown mode: %v", err)
	}
}
