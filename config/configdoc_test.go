package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/cache"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// configTableDoc is where the configuration table is documented.
const configTableDoc = "../docs/configuration.md"

// readmeConfigTable returns the rows of the documented configuration
// table: each key (a row may document several) with its default cell.
func readmeConfigTable(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(configTableDoc)
	if err != nil {
		t.Fatal(err)
	}
	// The table comes before any second-level section.
	section, _, _ := strings.Cut(string(b), "\n## ")
	key := regexp.MustCompile("`([a-z-]+)`")
	rows := map[string]string{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") || strings.TrimSpace(cells[1]) == "key" {
			continue
		}
		for _, m := range key.FindAllStringSubmatch(cells[1], -1) {
			rows[m[1]] = strings.TrimSpace(cells[2])
		}
	}
	if len(rows) == 0 {
		t.Fatalf("no rows in the configuration table of %s", configTableDoc)
	}
	return rows
}

// documentedDefault extracts the value from a default cell: the first
// `code span`, or "" for a cell starting with "empty".
func documentedDefault(t *testing.T, key, cell string) string {
	t.Helper()
	if strings.HasPrefix(cell, "empty") {
		return ""
	}
	m := regexp.MustCompile("`([^`]*)`").FindStringSubmatch(cell)
	if m == nil {
		t.Fatalf("docs/configuration.md: default of %s is %q: want a `value` or \"empty\"", key, cell)
	}
	return m[1]
}

// packageDefaults are the defaults the packages use when not given the
// option, as the config types hold them.
var packageDefaults = map[string]any{
	"repository":       ducc.DefaultRepository,
	"lookup-timeout":   Duration(snapshot.DefaultLookupTimeout),
	"accounting":       usage.DefaultAccounting.String(),
	"entry-timeout":    Duration(fusefs.DefaultTimeout),
	"attr-timeout":     Duration(fusefs.DefaultTimeout),
	"negative-timeout": Duration(fusefs.DefaultTimeout),
	"attr-cache-size":  cache.DefaultSize,
	"profile-limit":    usage.DefaultProfileLimit,
	"verify-chain":     snapshot.DefaultChainCheck,
}

// TestConfigTableDocumented: docs/configuration.md documents exactly the
// keys the daemon reads, each with the default the code uses.
func TestConfigTableDocumented(t *testing.T) {
	rows := readmeConfigTable(t)
	def, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	// Defaults that depend on other settings, as the daemon derives them;
	// the page writes them with <placeholders>.
	const root = "/ROOT" // absolute, as the daemon makes its paths
	placeholder := func(p string) string { return strings.Replace(p, root, "<root>", 1) }
	derived := map[string]string{
		"absolute-mountpoint": strings.Replace(def.AbsoluteMountpoint, def.Repository, "<repository>", 1),
		"fuse-server-socket":  placeholder(def.FUSEServerSocketPath(root)),
		"admin-socket":        placeholder(def.AdminSocketPath(root)),
	}

	v := reflect.ValueOf(def)
	seen := map[string]bool{}
	for i := range v.NumField() {
		f := v.Type().Field(i)
		key := f.Tag.Get("toml")
		if key == "" {
			continue
		}
		seen[key] = true
		cell, ok := rows[key]
		if !ok {
			t.Errorf("%s: the configuration table lacks the key %s", configTableDoc, key)
			continue
		}
		doc := documentedDefault(t, key, cell)
		if want, ok := derived[key]; ok {
			if doc != want {
				t.Errorf("docs/configuration.md: %s defaults to %q; the code: %q", key, doc, want)
			}
			continue
		}
		// Read the documented value as the daemon would read it.
		literal := doc
		switch f.Type.Kind() {
		case reflect.String:
			literal = `"` + doc + `"`
		case reflect.Int64: // Duration
			literal = `"` + doc + `"`
		}
		parsed := reflect.New(v.Type())
		if err := toml.Unmarshal([]byte(key+" = "+literal), parsed.Interface()); err != nil {
			t.Errorf("docs/configuration.md: default of %s, %q, does not parse: %v", key, doc, err)
			continue
		}
		got := parsed.Elem().Field(i).Interface()
		if want := v.Field(i).Interface(); !reflect.DeepEqual(got, want) {
			t.Errorf("docs/configuration.md: %s defaults to %v; the code: %v", key, got, want)
		}
		// Where a package owns the value, its own default is the truth.
		if want, ok := packageDefaults[key]; ok && !reflect.DeepEqual(got, want) {
			t.Errorf("docs/configuration.md: %s defaults to %v; the package: %v", key, got, want)
		}
	}
	for key := range rows {
		if !seen[key] {
			t.Errorf("docs/configuration.md documents %s, which the daemon does not read", key)
		}
	}
}
