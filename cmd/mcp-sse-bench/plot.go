package main

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"image/color"
	"math"
	"os"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// percentile is one point of a latency distribution.
type percentile struct {
	P     float64 // 50, 90, 99, 99.9
	Value time.Duration
}

// latencySeries is the latency distribution of one system in one workload.
type latencySeries struct {
	System      string // e.g. "mcp_sse", "reverse_proxy", "SDK SSE direct"
	Percentiles []percentile
}

// memoryPoint is the gateway's memory with a number of sessions held.
type memoryPoint struct {
	Sessions      int
	KiBPerSession float64
}

// memorySeries is one system's memory per session against session count.
type memorySeries struct {
	System string
	Points []memoryPoint
}

// Size and resolution of every plot.
const (
	plotWidth  = 16 * vg.Centimeter
	plotHeight = 10 * vg.Centimeter
	plotDPI    = 150
)

// seriesStyle is the color and marker shape of one system's series.
type seriesStyle struct {
	color color.Color
	shape draw.GlyphDrawer
}

// knownStyles holds the styles of the systems the benchmark compares.
var knownStyles = map[string]seriesStyle{
	systemGateway: {color.RGBA{R: 0, G: 114, B: 178, A: 255}, draw.CircleGlyph{}},
	systemProxy:   {color.RGBA{R: 213, G: 94, B: 0, A: 255}, draw.PyramidGlyph{}},
	systemDirect:  {color.RGBA{R: 0, G: 158, B: 115, A: 255}, draw.BoxGlyph{}},
	systemFloor:   {color.RGBA{R: 110, G: 110, B: 110, A: 255}, draw.CrossGlyph{}},
}

// fallbackColors and fallbackShapes style the systems not in knownStyles.
var (
	fallbackColors = []color.Color{
		color.RGBA{R: 204, G: 121, B: 167, A: 255},
		color.RGBA{R: 230, G: 159, B: 0, A: 255},
		color.RGBA{R: 86, G: 180, B: 233, A: 255},
		color.RGBA{R: 0, G: 0, B: 0, A: 255},
		color.RGBA{R: 140, G: 86, B: 75, A: 255},
		color.RGBA{R: 128, G: 128, B: 0, A: 255},
		color.RGBA{R: 117, G: 112, B: 179, A: 255},
	}
	fallbackShapes = []draw.GlyphDrawer{
		draw.RingGlyph{},
		draw.TriangleGlyph{},
		draw.SquareGlyph{},
		draw.CrossGlyph{},
		draw.PlusGlyph{},
	}
)

// styleFor returns the style of the named system. The style depends only
// on the name, so a system looks the same in every plot.
func styleFor(system string) seriesStyle {
	if s, ok := knownStyles[system]; ok {
		return s
	}
	h := fnv.New32a()
	h.Write([]byte(system))
	sum := h.Sum32()
	nColors, nShapes := uint32(len(fallbackColors)), uint32(len(fallbackShapes))
	return seriesStyle{
		color: fallbackColors[sum%nColors],
		shape: fallbackShapes[sum/nColors%nShapes],
	}
}

// newPlot returns an empty plot with a title, axis labels, a grid and a
// legend at the top.
func newPlot(title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.Title.Padding = vg.Points(6)
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Legend.TextStyle.Font.Size = vg.Points(10)
	p.Legend.Top = true
	p.Legend.YOffs = -vg.Points(4)
	p.Legend.Padding = vg.Points(3)
	p.Legend.YPosition = draw.PosCenter
	p.Add(plotter.NewGrid())
	return p
}

// addSeries adds xys to p as a line with markers in the style of system,
// with a legend entry.
func addSeries(p *plot.Plot, system string, xys plotter.XYs) error {
	line, points, err := plotter.NewLinePoints(xys)
	if err != nil {
		return fmt.Errorf("series %q: %w", system, err)
	}
	style := styleFor(system)
	line.Color = style.color
	line.Width = vg.Points(1.5)
	points.Color = style.color
	points.Shape = style.shape
	points.Radius = vg.Points(3.5)
	p.Add(line, points)
	p.Legend.Add(system, line, points)
	return nil
}

// wantLogScale reports whether data from lo to hi is positive and spans
// more than two decades, so that a log axis shows it better.
func wantLogScale(lo, hi float64) bool {
	return lo > 0 && hi/lo > 100
}

// setLinearScale gives axis a linear scale from 0, or from below the data
// if it is negative, with ticks at round values at most eight intervals
// apart, the axis ending on ticks.
func setLinearScale(axis *plot.Axis) {
	axis.Min = min(axis.Min, 0)
	axis.AutoRescale = true
	axis.Tick.Marker = plot.TickerFunc(func(lo, hi float64) []plot.Tick {
		// The smallest step of 1, 2 or 5 times a power of ten that covers
		// lo to hi in eight intervals. The axis grows to the outer ticks, so
		// the step must stay the same when called again with those.
		exp := math.Floor(math.Log10((hi - lo) / 8))
		var step, first, last, e float64
	search:
		for e = exp; e <= exp+1; e++ {
			for _, m := range []float64{1, 2, 5} {
				step = m * math.Pow(10, e)
				first, last = math.Floor(lo/step), math.Ceil(hi/step)
				if last-first <= 8 {
					break search
				}
			}
		}
		var ticks []plot.Tick
		for i := first; i <= last; i++ {
			v := i * step
			ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', int(max(0, -e)), 64)})
		}
		return ticks
	})
}

// setLogScale gives axis a log scale with ticks at every multiple of a power
// of ten, labeling 1, 2 and 5 times each power.
func setLogScale(axis *plot.Axis) {
	axis.Scale = plot.LogScale{}
	axis.Tick.Marker = plot.TickerFunc(func(lo, hi float64) []plot.Tick {
		var ticks []plot.Tick
		for exp := math.Floor(math.Log10(lo)); exp <= math.Ceil(math.Log10(hi)); exp++ {
			for i := 1; i <= 9; i++ {
				v := float64(i) * math.Pow(10, exp)
				if v < lo || v > hi {
					continue
				}
				t := plot.Tick{Value: v}
				if i == 1 || i == 2 || i == 5 {
					t.Label = strconv.FormatFloat(v, 'f', int(max(0, -exp)), 64)
				}
				ticks = append(ticks, t)
			}
		}
		return ticks
	})
}

// makeRoomForLegend raises the top of the y axis of p by about a third of
// the data's height, so that the legend does not cover the data.
func makeRoomForLegend(p *plot.Plot) {
	if _, ok := p.Y.Scale.(plot.LogScale); ok {
		p.Y.Max *= math.Pow(p.Y.Max/p.Y.Min, 0.3)
	} else {
		p.Y.Max += (p.Y.Max - p.Y.Min) * 0.3
	}
}

// savePNG writes p to path as a PNG image.
func savePNG(p *plot.Plot, path string) error {
	c := vgimg.NewWith(vgimg.UseWH(plotWidth, plotHeight), vgimg.UseDPI(plotDPI))
	margin := vg.Points(6)
	p.Draw(draw.Crop(draw.New(c), margin, -margin, margin, -margin))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeLatencyPlot writes a PNG of latency percentiles (x: percentile as a
// category p50/p90/p99/p99.9; y: milliseconds, log scale if the values span
// more than ~2 decades) with one line with markers per series and a legend,
// titled title.
func writeLatencyPlot(path, title string, series []latencySeries) error {
	var ps []float64
	minMS, maxMS := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, pc := range s.Percentiles {
			if !slices.Contains(ps, pc.P) {
				ps = append(ps, pc.P)
			}
			ms := float64(pc.Value) / float64(time.Millisecond)
			minMS, maxMS = min(minMS, ms), max(maxMS, ms)
		}
	}
	if len(ps) == 0 {
		return fmt.Errorf("writing %s: no latency data to plot", path)
	}
	slices.Sort(ps)

	p := newPlot(title, "percentile", "latency (ms)")
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(8)
	for _, s := range series {
		if len(s.Percentiles) == 0 {
			continue
		}
		pcs := slices.Clone(s.Percentiles)
		slices.SortFunc(pcs, func(a, b percentile) int { return cmp.Compare(a.P, b.P) })
		xys := make(plotter.XYs, len(pcs))
		for i, pc := range pcs {
			xys[i].X = float64(slices.Index(ps, pc.P))
			xys[i].Y = float64(pc.Value) / float64(time.Millisecond)
		}
		if err := addSeries(p, s.System, xys); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}

	labels := make([]string, len(ps))
	for i, pc := range ps {
		labels[i] = "p" + strconv.FormatFloat(pc, 'f', -1, 64)
	}
	p.NominalX(labels...)
	p.X.Min, p.X.Max = -0.3, float64(len(ps))-0.7
	if wantLogScale(minMS, maxMS) {
		setLogScale(&p.Y)
	} else {
		setLinearScale(&p.Y)
	}
	makeRoomForLegend(p)
	if err := savePNG(p, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// writeMemoryPlot writes a PNG of KiB per session (y, linear from 0) against
// sessions held (x), one line with markers per series, a legend, titled title,
// and a horizontal dashed line at targetKiB labeled "target" when targetKiB > 0.
func writeMemoryPlot(path, title string, series []memorySeries, targetKiB float64) error {
	p := newPlot(title, "sessions held", "KiB per session")
	p.Legend.XOffs = -vg.Points(8)
	minSessions, maxSessions := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		if len(s.Points) == 0 {
			continue
		}
		pts := slices.Clone(s.Points)
		slices.SortFunc(pts, func(a, b memoryPoint) int { return cmp.Compare(a.Sessions, b.Sessions) })
		xys := make(plotter.XYs, len(pts))
		for i, pt := range pts {
			xys[i].X = float64(pt.Sessions)
			xys[i].Y = pt.KiBPerSession
		}
		if err := addSeries(p, s.System, xys); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		minSessions = min(minSessions, xys[0].X)
		maxSessions = max(maxSessions, xys[len(xys)-1].X)
	}
	if math.IsInf(minSessions, 0) {
		return fmt.Errorf("writing %s: no memory data to plot", path)
	}

	if targetKiB > 0 {
		target := plotter.NewFunction(func(float64) float64 { return targetKiB })
		target.Color = color.Black
		target.Width = vg.Points(1)
		target.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		p.Add(target)
		p.Legend.Add("target", target)
		p.Y.Max = max(p.Y.Max, targetKiB)
	}

	if wantLogScale(minSessions, maxSessions) {
		setLogScale(&p.X)
	} else {
		setLinearScale(&p.X)
	}
	setLinearScale(&p.Y)
	makeRoomForLegend(p)
	if err := savePNG(p, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
