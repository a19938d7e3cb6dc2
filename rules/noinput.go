package rules

import (
	"context"
	"sync"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// A rule whose expression reads only metric names of which the local TSDB
// holds no series evaluates to nothing, and PromQL's engine still parses
// it, plans it and runs it to find that out. On a node without Redis,
// PostgreSQL or error logs, a third of the default rules were such runs
// every evaluation interval (docs/cost.md). The engine's query function
// answers them with an empty vector instead: for these expressions that
// is what the engine returns, so alerts resolve and recording rules' series
// go stale exactly as before.

// noInput is what one rule expression needs to be answered without the
// engine: empty reports, given which metric names have series, whether the
// expression certainly evaluates to an empty vector. A nil empty means the
// expression may produce samples from nothing (absent, vector, time, a
// number) and always goes to the engine.
type noInput struct {
	empty func(has func(name string) bool) bool
}

// noInputCache holds one noInput per query string the rule manager sends,
// bounded: a reload with new rules starts it over once it is full.
type noInputCache struct {
	mu sync.Mutex
	m  map[string]noInput
}

const noInputCacheMax = 4096

func (c *noInputCache) get(q string) noInput {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ni, ok := c.m[q]; ok {
		return ni
	}
	var ni noInput
	if e, err := Parser.ParseExpr(q); err == nil {
		ni.empty = emptyWhen(e)
	}
	if c.m == nil || len(c.m) >= noInputCacheMax {
		c.m = map[string]noInput{}
	}
	c.m[q] = ni
	return ni
}

// hasSeries reports whether the local TSDB holds a series of the metric
// name (in the head's index: series with samples in the retention, and
// those not yet collected after their last sample).
func (s *LocalStorage) hasSeries(name string) bool {
	ir, err := s.head.Index()
	if err != nil {
		return true
	}
	defer ir.Close()
	p, err := ir.Postings(context.Background(), model.MetricNameLabel, name)
	if err != nil {
		return true
	}
	return p.Next()
}

// emptyWhen returns the condition under which e certainly evaluates to an
// empty vector, or nil when there is none this function can tell. It
// follows PromQL's semantics: a selector without series selects nothing;
// an aggregation, a function of one vector argument (other than absent,
// absent_over_time and vector) and an operation with a scalar are empty
// when their vector is; a binary operation between vectors is empty when
// either side is (and, arithmetic, comparison), when its left side is
// (unless), or when both are (or, or with a fill value).
func emptyWhen(e parser.Expr) func(has func(string) bool) bool {
	if e.Type() != parser.ValueTypeVector && e.Type() != parser.ValueTypeMatrix {
		return nil // a scalar or string result is one sample, never empty
	}
	switch n := e.(type) {
	case *parser.VectorSelector:
		name := n.Name
		for _, m := range n.LabelMatchers {
			if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			return nil
		}
		return func(has func(string) bool) bool { return !has(name) }
	case *parser.MatrixSelector:
		return emptyWhen(n.VectorSelector)
	case *parser.SubqueryExpr:
		return emptyWhen(n.Expr)
	case *parser.ParenExpr:
		return emptyWhen(n.Expr)
	case *parser.StepInvariantExpr:
		return emptyWhen(n.Expr)
	case *parser.UnaryExpr:
		return emptyWhen(n.Expr)
	case *parser.AggregateExpr:
		return emptyWhen(n.Expr)
	case *parser.Call:
		switch n.Func.Name {
		case "absent", "absent_over_time", "vector", "scalar", "time", "pi":
			return nil
		}
		var arg parser.Expr
		for _, a := range n.Args {
			if t := a.Type(); t == parser.ValueTypeVector || t == parser.ValueTypeMatrix {
				if arg != nil {
					return nil // two vector arguments: not told apart here
				}
				arg = a
			}
		}
		if arg == nil {
			return nil // day_of_week() and the like read time()
		}
		return emptyWhen(arg)
	case *parser.BinaryExpr:
		lv := n.LHS.Type() == parser.ValueTypeVector
		rv := n.RHS.Type() == parser.ValueTypeVector
		var l, r func(func(string) bool) bool
		if lv {
			if l = emptyWhen(n.LHS); l == nil && !rv {
				return nil
			}
		}
		if rv {
			if r = emptyWhen(n.RHS); r == nil && !lv {
				return nil
			}
		}
		switch {
		case lv && !rv:
			return l
		case rv && !lv:
			return r
		case !lv && !rv:
			return nil
		}
		fill := n.VectorMatching != nil && (n.VectorMatching.FillValues.LHS != nil || n.VectorMatching.FillValues.RHS != nil)
		switch {
		case n.Op == parser.LOR || fill:
			// A fill value answers a series of one side without a match
			// on the other: only both sides empty is certainly empty.
			if l == nil || r == nil {
				return nil
			}
			return func(has func(string) bool) bool { return l(has) && r(has) }
		case n.Op == parser.LUNLESS:
			return l
		}
		switch {
		case l == nil:
			return r
		case r == nil:
			return l
		}
		return func(has func(string) bool) bool { return l(has) || r(has) }
	}
	return nil
}
