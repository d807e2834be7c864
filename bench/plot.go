package main

import (
	"fmt"
	"image/color"
	"path/filepath"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

var (
	targetColor = color.RGBA{R: 200, A: 255}
	refColor    = color.Gray{Y: 90}
)

// plots writes ratios.png, and rss.png and prepare.png when Prepare was
// measured.
func (rep *report) plots(dir string) error {
	if err := rep.ratioPlot(filepath.Join(dir, "ratios.png")); err != nil {
		return err
	}
	if len(rep.Prepare) == 0 {
		return nil
	}
	if err := rep.rssPlot(filepath.Join(dir, "rss.png")); err != nil {
		return err
	}
	return rep.preparePlot(filepath.Join(dir, "prepare.png"))
}

// ratioPlot is a grouped bar chart: ours / overlayfs per workload (groups)
// and variant (bars), with the line of parity and each target.
func (rep *report) ratioPlot(path string) error {
	var ws []string
	var variants []string
	ratio := map[[2]string]float64{}
	for _, r := range rep.Results {
		ratio[[2]string{r.Workload, r.Variant}] = r.ratio()
		if !slices.Contains(variants, r.Variant) {
			variants = append(variants, r.Variant)
		}
	}
	for _, w := range workloadOrder {
		for _, v := range variants {
			if _, ok := ratio[[2]string{w, v}]; ok && !slices.Contains(ws, w) {
				ws = append(ws, w)
			}
		}
	}
	p := plot.New()
	p.Add(plotter.NewGrid())
	p.Title.Text = "Time ours / time overlayfs (median; lower is better)"
	p.Y.Label.Text = "ours / overlayfs"
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = false
	const barWidth = vg.Length(15)
	for k, v := range variants {
		vals := make(plotter.Values, len(ws))
		labels := plotter.XYLabels{XYs: make(plotter.XYs, len(ws)), Labels: make([]string, len(ws))}
		for i, w := range ws {
			vals[i] = ratio[[2]string{w, v}]
			labels.XYs[i] = plotter.XY{X: float64(i), Y: vals[i]}
			labels.Labels[i] = fmt.Sprintf("%.2f", vals[i])
		}
		bars, err := plotter.NewBarChart(vals, barWidth)
		if err != nil {
			return err
		}
		off := barWidth * vg.Length(float64(k)-float64(len(variants)-1)/2)
		bars.Offset = off
		bars.Color = plotutil.Color(k)
		bars.LineStyle.Width = 0
		p.Add(bars)
		p.Legend.Add(v, bars)
		ls, err := plotter.NewLabels(labels)
		if err != nil {
			return err
		}
		for i := range ls.TextStyle {
			ls.TextStyle[i].Font.Size = 7
			ls.TextStyle[i].XAlign = -0.5
		}
		ls.Offset = vg.Point{X: off, Y: 2}
		p.Add(ls)
	}
	parity, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: 1}, {X: float64(len(ws)) - 0.5, Y: 1}})
	if err != nil {
		return err
	}
	parity.Color = refColor
	p.Add(parity)
	p.Legend.Add("overlayfs = 1", parity)
	legendTarget := true
	for i, w := range ws {
		t := workloads[w].Target
		if t == 0 {
			continue
		}
		l, err := plotter.NewLine(plotter.XYs{{X: float64(i) - 0.45, Y: t}, {X: float64(i) + 0.45, Y: t}})
		if err != nil {
			return err
		}
		l.Color, l.Dashes, l.Width = targetColor, []vg.Length{vg.Points(4), vg.Points(2)}, vg.Points(1.5)
		p.Add(l)
		if legendTarget {
			p.Legend.Add("target", l)
			legendTarget = false
		}
	}
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = workloads[w].Short
	}
	p.NominalX(names...)
	headroom(p)
	return p.Save(9*vg.Inch, 4.5*vg.Inch, path)
}

// linePlot returns an empty plot with a grid, the given title and axis
// labels, y from 0 and the legend at the top left.
func linePlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Add(plotter.NewGrid())
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	return p
}

// rssPlot is the daemon's VmRSS and VmHWM against layers mounted.
func (rep *report) rssPlot(path string) error {
	p := linePlot("Daemon memory vs layers mounted", "layers mounted", "MB (10^6 bytes)")
	for k, pr := range rep.Prepare {
		rss, hwm := plotter.XYs{{X: 0, Y: mbf(pr.Baseline.VmRSSKiB)}}, plotter.XYs{{X: 0, Y: mbf(pr.Baseline.VmHWMKiB)}}
		for _, pt := range pr.Points {
			rss = append(rss, plotter.XY{X: float64(pt.Layers), Y: mbf(pt.VmRSSKiB)})
			hwm = append(hwm, plotter.XY{X: float64(pt.Layers), Y: mbf(pt.VmHWMKiB)})
		}
		if err := addLine(p, pr.Variant+" VmRSS", rss, plotutil.Color(k), nil, draw.CircleGlyph{}); err != nil {
			return err
		}
		if err := addLine(p, pr.Variant+" VmHWM", hwm, plotutil.Color(k), []vg.Length{vg.Points(4), vg.Points(3)}, nil); err != nil {
			return err
		}
	}
	targets, err := plotter.NewScatter(plotter.XYs{{X: 200, Y: 100}, {X: 1000, Y: 200}})
	if err != nil {
		return err
	}
	targets.GlyphStyle = draw.GlyphStyle{Color: targetColor, Radius: vg.Points(5), Shape: draw.CrossGlyph{}}
	p.Add(targets)
	p.Legend.Add("target (at most)", targets)
	headroom(p)
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}

// preparePlot is the median and p90 latency of Prepare per 100 layers
// against layers mounted.
func (rep *report) preparePlot(path string) error {
	p := linePlot("Remote Prepare latency vs layers mounted (per 100 layers)", "layers mounted (end of each group of 100)", "ms")
	xmax := 0.0
	for k, pr := range rep.Prepare {
		var med, p90 plotter.XYs
		for _, pt := range pr.Points {
			med = append(med, plotter.XY{X: float64(pt.Layers), Y: msf(pt.Median)})
			p90 = append(p90, plotter.XY{X: float64(pt.Layers), Y: msf(pt.P90)})
			xmax = max(xmax, float64(pt.Layers))
		}
		if err := addLine(p, pr.Variant+" median", med, plotutil.Color(k), nil, draw.CircleGlyph{}); err != nil {
			return err
		}
		if err := addLine(p, pr.Variant+" p90", p90, plotutil.Color(k), []vg.Length{vg.Points(4), vg.Points(3)}, draw.TriangleGlyph{}); err != nil {
			return err
		}
	}
	target, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 5}, {X: xmax, Y: 5}})
	if err != nil {
		return err
	}
	target.Color, target.Dashes = targetColor, []vg.Length{vg.Points(4), vg.Points(2)}
	p.Add(target)
	p.Legend.Add("target 5 ms", target)
	headroom(p)
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}

// addLine adds a line with optional dashes and point glyphs and its
// legend entry.
func addLine(p *plot.Plot, name string, xys plotter.XYs, c color.Color, dashes []vg.Length, glyph draw.GlyphDrawer) error {
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	l.Color, l.Dashes, l.Width = c, dashes, vg.Points(1.5)
	pts.Color = c
	if glyph != nil {
		pts.Shape = glyph
		p.Add(l, pts)
		p.Legend.Add(name, l, pts)
		return nil
	}
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

func mbf(kib int64) float64       { return float64(kib) * 1024 / 1e6 }
func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// headroom raises the top of the Y axis so that the legend, drawn in a top
// corner, clears the data.
func headroom(p *plot.Plot) {
	p.Y.Max *= 1.4
}
