package main

import (
	"fmt"
	"html"
	"strings"
)

// The chart is an SVG of horizontal bars: one panel per benchmark (B1, B2)
// and network, and in each, per implementation, its median caller time
// and median end-to-end time. Each panel has its own linear scale starting
// at 0, and every bar carries its figure, so that a short bar next to a
// long one stays readable.
const (
	chartWidth   = 860
	chartLabelW  = 130 // implementation names
	chartBarMax  = 560
	chartBarH    = 13
	chartBarGap  = 3
	chartGroupH  = 2*chartBarH + chartBarGap + 9
	chartTitleH  = 26
	chartPanelGp = 14
	colorCaller  = "#4c78a8"
	colorE2E     = "#f58518"
)

// panel is one benchmark on one network.
type panel struct {
	title          string
	caller, e2e    string // row names
	callerLabel    string
	e2eLabel       string
	callers, e2es  []float64 // per implementation; <0 when missing
	implementation []string
}

// chart renders the SVG.
func (b *bench) chart() string {
	var panels []panel
	for _, s := range b.stages {
		rtt := s.nw.label()
		panels = append(panels,
			b.panel(fmt.Sprintf("B1: one 2 KB message, %s RTT: caller and end-to-end (median of %d)", rtt, b.st.runs), rtt,
				"B1 caller", "B1 end-to-end", "caller", "end-to-end"),
			b.panel(fmt.Sprintf("B2: %d sequential invocations, %s RTT: the callers' total and end-to-end (median of %d)", b.st.seq, rtt, b.st.reps), rtt,
				fmt.Sprintf("B2 caller total, %d sequential", b.st.seq), fmt.Sprintf("B2 end-to-end, %d sequential", b.st.seq),
				"callers' total", "end-to-end"))
	}
	height := 40
	for _, p := range panels {
		height += chartTitleH + len(p.implementation)*chartGroupH + chartPanelGp
	}
	var w strings.Builder
	fmt.Fprintf(&w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&w, `<text x="10" y="18" font-size="14" font-weight="bold">relaymail benchmarks (make bench): median times, lower is better</text>`+"\n")
	fmt.Fprintf(&w, `<rect x="%d" y="26" width="12" height="10" fill="%s"/><text x="%d" y="35">caller</text>`+"\n", chartLabelW, colorCaller, chartLabelW+16)
	fmt.Fprintf(&w, `<rect x="%d" y="26" width="12" height="10" fill="%s"/><text x="%d" y="35">end-to-end (until the smarthost has the message)</text>`+"\n", chartLabelW+80, colorE2E, chartLabelW+96)
	y := 40
	for _, p := range panels {
		y = p.render(&w, y)
	}
	w.WriteString("</svg>\n")
	return w.String()
}

// panel collects one panel's figures from the rows.
func (b *bench) panel(title, rtt, caller, e2e, callerLabel, e2eLabel string) panel {
	p := panel{title: title, caller: caller, e2e: e2e, callerLabel: callerLabel, e2eLabel: e2eLabel}
	for _, im := range b.impls() {
		p.implementation = append(p.implementation, im.name)
		p.callers = append(p.callers, b.median(caller, rtt, im))
		p.e2es = append(p.e2es, b.median(e2e, rtt, im))
	}
	return p
}

// median returns the summary of a row, or -1 when there is none.
func (b *bench) median(bench, rtt string, im *impl) float64 {
	if r := b.find(bench, rtt, im); r != nil {
		if v, ok := r.summary(); ok {
			return v
		}
	}
	return -1
}

// render draws the panel from y down and returns the y below it.
func (p panel) render(w *strings.Builder, y int) int {
	fmt.Fprintf(w, `<text x="10" y="%d" font-weight="bold">%s</text>`+"\n", y+18, html.EscapeString(p.title))
	y += chartTitleH
	top := 0.0
	for i := range p.implementation {
		top = max(top, p.callers[i], p.e2es[i])
	}
	for i, name := range p.implementation {
		fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", chartLabelW-8, y+chartBarH+2, html.EscapeString(name))
		bar(w, y, p.callers[i], top, colorCaller, p.callerLabel)
		bar(w, y+chartBarH+chartBarGap, p.e2es[i], top, colorE2E, p.e2eLabel)
		y += chartGroupH
	}
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`+"\n", chartLabelW, y-chartGroupH*len(p.implementation), chartLabelW, y-9)
	return y + chartPanelGp
}

// bar draws one bar of value v on a scale whose longest bar is top.
func bar(w *strings.Builder, y int, v, top float64, color, what string) {
	if v < 0 {
		fmt.Fprintf(w, `<text x="%d" y="%d" fill="#666">%s: not measured</text>`+"\n", chartLabelW+4, y+chartBarH-2, what)
		return
	}
	width := 1.0
	if top > 0 {
		width = max(1, v/top*chartBarMax)
	}
	fmt.Fprintf(w, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s: %s</title></rect>`+"\n",
		chartLabelW, y, width, chartBarH, color, what, formatMS(v))
	fmt.Fprintf(w, `<text x="%.1f" y="%d">%s</text>`+"\n", float64(chartLabelW)+width+4, y+chartBarH-2, formatMS(v))
}
