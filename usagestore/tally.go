package usagestore

import (
	"cmp"
	"slices"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// tally is the figures of one or more FUSE sessions of a layer.
type tally struct {
	Opens, Bytes int64
	// First and Last are unix nanoseconds; 0 when never accessed.
	First, Last int64
	Truncated   bool
	Profile     []usage.FileAccess `json:",omitempty"`
}

// liveTally is the tally of a live session.
func liveTally(st usage.LayerStats, prof []usage.FileAccess) tally {
	return tally{
		Opens:     st.Opens,
		Bytes:     st.BytesRead,
		First:     unixNano(st.FirstAccess),
		Last:      unixNano(st.LastAccess),
		Truncated: st.ProfileTruncated,
		Profile:   prof,
	}
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// merge returns a and b summed, with a profile of at most limit paths: a's
// paths first, then b's new ones while room is left (Truncated is set when
// any is dropped, or either side was truncated). Negative figures, from a
// corrupt record, count as 0.
func merge(a, b tally, limit int) tally {
	out := tally{
		Opens:     nonNeg(a.Opens) + nonNeg(b.Opens),
		Bytes:     nonNeg(a.Bytes) + nonNeg(b.Bytes),
		First:     minNonZero(a.First, b.First),
		Last:      max(a.Last, b.Last),
		Truncated: a.Truncated || b.Truncated,
	}
	idx := make(map[string]int, len(a.Profile)+len(b.Profile))
	add := func(f usage.FileAccess) {
		if i, ok := idx[f.Path]; ok {
			out.Profile[i].Opens += nonNeg(f.Opens)
			out.Profile[i].Bytes += nonNeg(f.Bytes)
			return
		}
		if len(out.Profile) >= limit {
			out.Truncated = true
			return
		}
		idx[f.Path] = len(out.Profile)
		out.Profile = append(out.Profile, usage.FileAccess{Path: f.Path, Opens: nonNeg(f.Opens), Bytes: nonNeg(f.Bytes)})
	}
	for _, f := range a.Profile {
		add(f)
	}
	for _, f := range b.Profile {
		add(f)
	}
	slices.SortFunc(out.Profile, func(x, y usage.FileAccess) int {
		if c := cmp.Compare(y.Bytes, x.Bytes); c != 0 {
			return c
		}
		return cmp.Compare(x.Path, y.Path)
	})
	return out
}

func nonNeg(n int64) int64 { return max(n, 0) }

func minNonZero(a, b int64) int64 {
	switch {
	case a <= 0:
		return max(b, 0)
	case b <= 0:
		return a
	}
	return min(a, b)
}

// view returns t as a LayerUsage.
func (t tally) view(rec layerRecord, mounted bool) usage.LayerUsage {
	return usage.LayerUsage{
		Layer:       rec.Layer,
		Accounting:  rec.Accounting,
		Files:       int64(len(t.Profile)),
		Opens:       t.Opens,
		Bytes:       t.Bytes,
		FirstAccess: fromUnixNano(t.First),
		LastAccess:  fromUnixNano(t.Last),
		Truncated:   t.Truncated,
		Mounted:     mounted,
		Profile:     t.Profile,
	}
}
