package usagestore

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// Report returns, for each layer of each image (in unpack order), the
// share of its files and bytes that workloads read. A served layer whose
// contents are not counted yet is counted in the background (its row says
// Counting; a later report has the totals). An image never unpacked
// through the snapshotter returns an error wrapping errdefs.ErrNotFound.
// An image named twice is reported once.
func (s *Store) Report(ctx context.Context, images []string) ([]usage.ReportRow, error) {
	s.profiles.refresh(ctx, false)
	return s.report(ctx, images, true)
}

// report is Report with the live figures as last brought in; count says
// whether counts may be started.
func (s *Store) report(ctx context.Context, images []string, count bool) ([]usage.ReportRow, error) {
	var rows []usage.ReportRow
	seen := map[string]bool{}
	for _, ref := range images {
		if seen[ref] {
			continue
		}
		seen[ref] = true
		img, ok := s.Image(ref)
		if !ok {
			return nil, fmt.Errorf("image %q: no unpack of it recorded: %w", ref, errdefs.ErrNotFound)
		}
		for _, l := range img.Layers {
			row := usage.ReportRow{Image: ref, Layer: l.Layer, Served: l.Served, Reason: l.Reason}
			if l.Layer == "" {
				rows = append(rows, row)
				continue
			}
			u, ok, err := s.profiles.layer(ctx, l.Layer)
			if err != nil {
				return nil, err
			}
			if ok {
				row.Accounting, row.FilesRead, row.BytesRead, row.Truncated = u.Accounting.String(), u.Files, u.Bytes, u.Truncated
			}
			if l.Served {
				c, counting, err := s.contents.of(l.Layer, count)
				if err != nil {
					row.ContentsError = err.Error()
				}
				row.FilesTotal, row.BytesTotal, row.Counting = c.Files, c.Bytes, counting
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}
