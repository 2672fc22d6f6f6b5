// promparse reads a Prometheus text exposition (format 0.0.4) on stdin with
// the Prometheus project's own parser (github.com/prometheus/common/expfmt)
// and prints its metric families as JSON on stdout: name, type, help, label
// names (without le and quantile) and, for histograms, the bucket upper
// bounds (without +Inf). A parse error exits 1 with the parser's message.
package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

type family struct {
	Name    string    `json:"name"`
	Type    string    `json:"type"`
	Help    string    `json:"help"`
	Labels  []string  `json:"labels"`
	Buckets []float64 `json:"buckets,omitempty"`
	Series  int       `json:"series"`
}

func main() {
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "parse error:", err)
		os.Exit(1)
	}
	names := make([]string, 0, len(families))
	for name := range families {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make([]family, 0, len(names))
	for _, name := range names {
		mf := families[name]
		if !model.LegacyValidation.IsValidMetricName(name) {
			fmt.Fprintln(os.Stderr, "invalid metric name:", name)
			os.Exit(1)
		}
		f := family{Name: name, Type: typeName(mf.GetType()), Help: mf.GetHelp(), Labels: []string{}, Series: len(mf.GetMetric())}
		seen := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !seen[lp.GetName()] {
					seen[lp.GetName()] = true
					f.Labels = append(f.Labels, lp.GetName())
				}
			}
			if h := m.GetHistogram(); h != nil && f.Buckets == nil {
				f.Buckets = []float64{}
				for _, b := range h.GetBucket() {
					if !math.IsInf(b.GetUpperBound(), 1) {
						f.Buckets = append(f.Buckets, b.GetUpperBound())
					}
				}
			}
		}
		sort.Strings(f.Labels)
		out = append(out, f)
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func typeName(t dto.MetricType) string {
	switch t {
	case dto.MetricType_COUNTER:
		return "counter"
	case dto.MetricType_GAUGE:
		return "gauge"
	case dto.MetricType_HISTOGRAM:
		return "histogram"
	case dto.MetricType_SUMMARY:
		return "summary"
	default:
		return "untyped"
	}
}
