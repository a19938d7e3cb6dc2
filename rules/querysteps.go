package rules

import (
	"fmt"
	"math"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
)

// MaxQuerySteps is how many evaluation steps the subqueries of one query
// (to /api/v1/query, of a rule, of a rule test) may take, nested subqueries multiplied. Prometheus's
// engine allocates two 8-byte counters per subquery step before it
// evaluates anything, whether or not a series matches, so
// last_over_time(x[70y:1ms]) asked for 35 TB and killed the agent
// (found by FuzzQueryParams; a rule or a rule test with it did the same);
// max_samples does not see it. Two million
// steps are 32 MB, and twenty minutes at one millisecond still reach the
// engine (and its max_samples).
const MaxQuerySteps = 2_000_000

// CheckQuerySteps refuses a query whose subqueries, nested ones
// multiplied, take more than MaxQuerySteps steps; a subquery without a
// step uses defaultStep, as the engine does.
func CheckQuerySteps(expr parser.Expr, defaultStep time.Duration) error {
	var err error
	var walk func(n parser.Node, outer float64)
	walk = func(n parser.Node, outer float64) {
		if n == nil || err != nil {
			return
		}
		steps := outer
		if sq, ok := n.(*parser.SubqueryExpr); ok {
			step := sq.Step
			if step <= 0 {
				step = defaultStep
			}
			if step <= 0 {
				step = time.Minute
			}
			steps = outer * (math.Floor(float64(sq.Range)/float64(step)) + 1)
			if steps > MaxQuerySteps {
				err = fmt.Errorf("subquery %s takes %.0f evaluation steps, more than the %d a query may take", sq, steps, MaxQuerySteps)
				return
			}
		}
		for _, c := range parser.Children(n) {
			walk(c, steps)
		}
	}
	walk(expr, 1)
	return err
}
