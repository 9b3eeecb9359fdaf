package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/idvault/idvault/vault/audit"
)

// chartHours is how many hours the volume chart covers, ending now.
const chartHours = 24

// volume counts successful redemptions (images actually viewed) per
// principal per hour slot; slot chartHours-1 is the current hour.
type volume map[string]*[chartHours]int

// reviewVolume reads the last chartHours hours of redemptions from the
// audit log.
func (a *App) reviewVolume(ctx context.Context, now time.Time) (volume, error) {
	start := now.Truncate(time.Hour).Add(-(chartHours - 1) * time.Hour)
	v := volume{}
	for rec, err := range audit.Scan(ctx, a.st, audit.Filter{Event: audit.EventRedeem, Outcome: audit.OutcomeOK, Since: start}) {
		if err != nil {
			return v, err
		}
		slot := int(rec.Time.Sub(start) / time.Hour)
		if slot < 0 || slot >= chartHours || rec.Principal == "" {
			continue
		}
		if v[rec.Principal] == nil {
			v[rec.Principal] = new([chartHours]int)
		}
		v[rec.Principal][slot]++
	}
	return v, nil
}

// chart is a server-rendered SVG bar chart: every coordinate is computed
// here, the template only prints them (no script, no chart library).
type chart struct {
	Width, Height int
	PlotX, PlotY  int // top-left of the plot area
	PlotW, PlotH  int
	Bars          []chartBar
	XLabels       []chartLabel
	YLabels       []chartLabel
	Legend        []chartLegend
	Empty         bool
}

type chartBar struct {
	X, Y, W, H int
	Fill       string
	Title      string
}

type chartLabel struct {
	X, Y int
	Text string
}

type chartLegend struct {
	X, Y int
	Fill string
	Name string
}

var palette = []string{"#2b6cb0", "#d97706", "#059669", "#9333ea", "#dc2626", "#0891b2", "#4d7c0f", "#be185d"}

// volumeChart lays out vol as grouped bars: one group per hour, one bar per
// principal, the y axis scaled to the largest count.
func volumeChart(vol volume, now time.Time) chart {
	c := chart{Width: 760, Height: 250, PlotX: 40, PlotY: 36, PlotW: 29 * chartHours, PlotH: 170}
	start := now.Truncate(time.Hour).Add(-(chartHours - 1) * time.Hour)
	names := make([]string, 0, len(vol))
	peak := 0
	for name, counts := range vol {
		names = append(names, name)
		for _, n := range counts {
			peak = max(peak, n)
		}
	}
	slices.Sort(names)
	c.Empty = peak == 0
	if peak == 0 {
		peak = 1
	}
	// A y axis of whole numbers, at most 5 ticks.
	step := max(1, (peak+4)/5)
	top := ((peak + step - 1) / step) * step
	for v := 0; v <= top; v += step {
		y := c.PlotY + c.PlotH - v*c.PlotH/top
		c.YLabels = append(c.YLabels, chartLabel{X: c.PlotX - 6, Y: y + 4, Text: fmt.Sprint(v)})
	}
	group := c.PlotW / chartHours
	barW := max(1, (group-4)/max(1, len(names)))
	for slot := range chartHours {
		gx := c.PlotX + slot*group + 2
		hour := start.Add(time.Duration(slot) * time.Hour)
		if slot%3 == 0 || slot == chartHours-1 {
			c.XLabels = append(c.XLabels, chartLabel{X: gx + group/2 - 2, Y: c.PlotY + c.PlotH + 16, Text: hour.Local().Format("15h")})
		}
		for i, name := range names {
			n := vol[name][slot]
			if n == 0 {
				continue
			}
			h := n * c.PlotH / top
			c.Bars = append(c.Bars, chartBar{
				X: gx + i*barW, Y: c.PlotY + c.PlotH - h, W: barW, H: h,
				Fill:  palette[i%len(palette)],
				Title: fmt.Sprintf("%s, %s–%s: %d image(s) viewed", name, hour.Local().Format("15:04"), hour.Add(time.Hour).Local().Format("15:04"), n),
			})
		}
	}
	for i, name := range names {
		c.Legend = append(c.Legend, chartLegend{X: c.PlotX + i*150, Y: 14, Fill: palette[i%len(palette)], Name: name})
	}
	return c
}
