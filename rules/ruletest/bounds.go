package ruletest

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-agent/vigil/internal/confyaml"
)

// MaxSeriesSamples is how many samples one input series may expand to.
// promqltest expands "0+1x100000000" into that many samples in memory
// before a test runs, so a short line could exhaust the machine; a week of
// one-minute samples (10080) fits many times over.
const MaxSeriesSamples = 100_000

// MaxEvalSteps is how many times a test group may evaluate its rules:
// from 0 to its latest eval_time every evaluation_interval. A day at one
// minute is 1441; evaluation_interval: 1ms with eval_time: 1000h would be
// 3.6 billion.
const MaxEvalSteps = 100_000

// checkEvalSteps refuses a test group that would evaluate its rules more
// than MaxEvalSteps times.
func checkEvalSteps(interval, maxEval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("evaluation_interval must be positive, got %s", interval)
	}
	if steps := uint64(maxEval/interval) + 1; steps > MaxEvalSteps {
		return fmt.Errorf("evaluating every %s up to eval_time %s is %d rule evaluations, more than the %d a test may run", interval, maxEval, steps, MaxEvalSteps)
	}
	return nil
}

// UnmarshalYAML decodes an input series and refuses values that expand to
// more than MaxSeriesSamples samples, naming the line.
func (s *inputSeries) UnmarshalYAML(n *yaml.Node) error {
	type plain inputSeries
	if err := n.Decode((*plain)(s)); err != nil {
		return err
	}
	at := n
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "values" {
			at = n.Content[i+1]
		}
	}
	if c := countSamples(s.Values); c > MaxSeriesSamples {
		return &confyaml.Error{Line: at.Line, Column: at.Column, Path: "input_series.values",
			Msg: fmt.Sprintf("series %s expands to %s samples, more than the %d a test series may have", s.Series, countString(c), MaxSeriesSamples)}
	}
	return nil
}

func countString(c uint64) string {
	if c == math.MaxUint64 {
		return "too many"
	}
	return strconv.FormatUint(c, 10)
}

// countSamples counts the samples a promqltest values string expands to
// without expanding it: "a", "_" and "stale" are one sample, "a+bxN",
// "a-bxN" and "axN" are N+1, "_xN" is N; native histograms ("{{…}}", which
// may hold spaces) count the same way. It saturates at math.MaxUint64.
func countSamples(values string) uint64 {
	var total uint64
	add := func(tok string) {
		n := uint64(1)
		if i := strings.LastIndexByte(tok, 'x'); i >= 0 && i+1 < len(tok) && !strings.Contains(tok[i:], "}") {
			if r, err := strconv.ParseUint(tok[i+1:], 10, 64); err == nil {
				n = r + 1
				if r == math.MaxUint64 {
					n = r
				}
			} else if allDigits(tok[i+1:]) {
				n = math.MaxUint64 // too large to parse
			}
		}
		if total > math.MaxUint64-n {
			total = math.MaxUint64
			return
		}
		total += n
	}
	depth, start := 0, -1
	for i := 0; i < len(values); i++ {
		c := values[i]
		switch {
		case strings.HasPrefix(values[i:], "{{"):
			depth++
			i++
			if start < 0 {
				start = i - 1
			}
		case strings.HasPrefix(values[i:], "}}") && depth > 0:
			depth--
			i++
		case (c == ' ' || c == '\t' || c == '\n' || c == '\r') && depth == 0:
			if start >= 0 {
				add(values[start:i])
				start = -1
			}
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		add(values[start:])
	}
	return total
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
