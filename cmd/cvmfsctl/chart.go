package main

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

var (
	filesColor = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	bytesColor = color.RGBA{R: 255, G: 127, B: 14, A: 255}
)

// chart is a bar chart with, for each layer served from the repository, the
// share of its files and of its bytes that workloads read.
func chart(rows []usage.ReportRow) (*plot.Plot, vg.Length, error) {
	var files, byts plotter.Values
	var names []string
	images := map[string]bool{}
	for _, r := range rows {
		images[r.Image] = true
	}
	for _, r := range rows {
		if !r.Served {
			continue
		}
		files = append(files, percent(r.FilesRead, r.FilesTotal))
		byts = append(byts, percent(r.BytesRead, r.BytesTotal))
		name := shortDigest(string(r.Layer))
		if len(images) > 1 {
			name = shortImage(r.Image) + "\n" + name
		}
		names = append(names, name)
	}
	p := plot.New()
	p.Title.Text = "Share of each layer read by workloads"
	if len(images) == 1 {
		for img := range images {
			p.Title.Text += "\n" + img
		}
	}
	p.Y.Label.Text = "% of the layer"
	p.X.Label.Text = "layer (served from CVMFS)"
	// Room above 100% for the legend and the bars' labels.
	p.Y.Min, p.Y.Max = 0, 125
	p.Y.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 0, Label: "0"}, {Value: 25, Label: "25"}, {Value: 50, Label: "50"}, {Value: 75, Label: "75"}, {Value: 100, Label: "100"}})
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil
	p.Add(grid)
	p.Legend.Top = true
	p.Legend.Left = false
	if len(names) == 0 {
		p.Title.Text += ": no layer was served from CVMFS"
		return p, 6 * vg.Inch, nil
	}
	const barWidth = vg.Length(24)
	for i, s := range []struct {
		vals  plotter.Values
		label string
		col   color.Color
	}{{files, "files read", filesColor}, {byts, "bytes read", bytesColor}} {
		bars, err := plotter.NewBarChart(s.vals, barWidth)
		if err != nil {
			return nil, 0, err
		}
		bars.Color = s.col
		bars.LineStyle.Width = 0
		bars.Offset = barWidth * vg.Length(float64(i)-0.5)
		p.Add(bars)
		p.Legend.Add(s.label, bars)
		labels := plotter.XYLabels{XYs: make(plotter.XYs, len(s.vals)), Labels: make([]string, len(s.vals))}
		for j, v := range s.vals {
			labels.XYs[j] = plotter.XY{X: float64(j), Y: v}
			labels.Labels[j] = fmt.Sprintf("%.0f%%", v)
		}
		ls, err := plotter.NewLabels(labels)
		if err != nil {
			return nil, 0, err
		}
		for k := range ls.TextStyle {
			ls.TextStyle[k].Font.Size = vg.Points(8)
			ls.TextStyle[k].XAlign = draw.XCenter
		}
		ls.Offset = vg.Point{X: bars.Offset, Y: 2}
		p.Add(ls)
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4
	width := max(6*vg.Inch, vg.Length(len(names))*1.1*vg.Inch)
	return p, width, nil
}

// shortImage drops the registry from an image reference.
func shortImage(ref string) string {
	if i := strings.Index(ref, "/"); i >= 0 && strings.ContainsAny(ref[:i], ".:") {
		return ref[i+1:]
	}
	return ref
}

// writeChart saves the chart to path, as SVG, PNG or PDF by its extension.
func writeChart(path string, rows []usage.ReportRow) error {
	p, width, err := chart(rows)
	if err != nil {
		return err
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".svg", ".png", ".pdf", ".jpg", ".jpeg":
	default:
		return fmt.Errorf("chart %s: want a .svg, .png or .pdf file", path)
	}
	return p.Save(width, 4*vg.Inch, path)
}

var htmlPage = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>cvmfs-snapshotter usage report</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}</style>
</head><body>
<h1>Which part of each layer workloads read</h1>
{{.SVG}}
<table><tr><th>image</th><th>layer</th><th>from</th><th>files read</th><th>of</th><th>bytes read</th><th>of</th></tr>
{{range .Rows}}<tr><td>{{.Image}}</td><td>{{.Layer}}</td><td>{{if .Served}}cvmfs{{else}}registry ({{.Reason}}){{end}}</td><td>{{.FilesRead}}</td><td>{{.FilesTotal}}</td><td>{{.BytesRead}}</td><td>{{.BytesTotal}}</td></tr>
{{end}}</table></body></html>
`))

// writeHTML writes a self-contained page: the chart as inline SVG, and the
// table.
func writeHTML(path string, rows []usage.ReportRow) error {
	p, width, err := chart(rows)
	if err != nil {
		return err
	}
	c := vgsvg.New(width, 4*vg.Inch)
	p.Draw(draw.New(c))
	var svg bytes.Buffer
	if _, err := c.WriteTo(&svg); err != nil {
		return err
	}
	// The SVG comes from the plotting library, not from the daemon's data
	// unescaped: the labels are digests and image names it escapes itself.
	doc := strings.TrimSpace(svg.String())
	if i := strings.Index(doc, "<svg"); i > 0 {
		doc = doc[i:]
	}
	var out bytes.Buffer
	if err := htmlPage.Execute(&out, struct {
		SVG  template.HTML
		Rows []usage.ReportRow
	}{template.HTML(doc), rows}); err != nil {
		return err
	}
	return os.WriteFile(path, out.Bytes(), 0o644)
}
