package confyaml

import (
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// MaxAliasNodes is how many nodes the aliases of one document may add
// when they are expanded. YAML aliases let a few hundred bytes stand for
// billions of nodes ("billion laughs"); every walk over a document
// (unknown-key checks, decoding, policy compilation) follows aliases, so a
// document over this budget is refused before anything walks it. Anchors
// that share a list of matchers or a block of parameters stay far below it.
const MaxAliasNodes = 10000

// MaxErrors is how many problems a configuration or rule file reports
// before the rest are summed up as "… and N more problems", so a file
// with a mistake repeated (or multiplied by aliases) cannot flood a log
// line or an HTTP reply.
const MaxErrors = 20

// CheckAliases refuses a document whose aliases, expanded, would add more
// than limit nodes to it, or that contains an alias to one of its own
// ancestors. The error names the file and the line and column of the
// alias that crosses the budget. The count is memoized per node, so
// checking takes time and memory in proportion to the written document,
// not to its expansion.
func CheckAliases(file string, root *yaml.Node, limit int) error {
	if root == nil {
		return nil
	}
	s := &aliasSizer{cap: limit + 1, size: map[*yaml.Node]int{}, busy: map[*yaml.Node]bool{}}
	var added int
	var bad *yaml.Node
	var cycle bool
	// Walk the written document; at each alias, add the size of what it
	// stands for. Stop at the first alias that crosses the budget.
	var walk func(n *yaml.Node) bool
	walk = func(n *yaml.Node) bool {
		if n.Kind == yaml.AliasNode {
			if n.Alias == nil {
				return true
			}
			sz, ok := s.expanded(n.Alias)
			if !ok {
				bad, cycle = n, true
				return false
			}
			added += sz
			if added > limit {
				bad = n
				return false
			}
			return true
		}
		for _, c := range n.Content {
			if !walk(c) {
				return false
			}
		}
		return true
	}
	walk(root)
	if bad == nil {
		return nil
	}
	e := &Error{File: file, Line: bad.Line, Column: bad.Column}
	if cycle {
		e.Msg = fmt.Sprintf("alias *%s refers to a node that contains it", bad.Value)
	} else {
		e.Msg = fmt.Sprintf("aliases expand the document by more than %d nodes (at *%s); write the values out instead of multiplying them with aliases", limit, bad.Value)
	}
	return e
}

// aliasSizer computes expanded node counts, saturating at cap.
type aliasSizer struct {
	cap  int
	size map[*yaml.Node]int
	busy map[*yaml.Node]bool
}

// expanded returns the number of nodes n stands for with every alias
// under it expanded (at most s.cap), and false for a node that contains
// an alias to itself.
func (s *aliasSizer) expanded(n *yaml.Node) (int, bool) {
	if v, ok := s.size[n]; ok {
		return v, true
	}
	if s.busy[n] {
		return 0, false
	}
	s.busy[n] = true
	defer delete(s.busy, n)
	total := 1
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		v, ok := s.expanded(n.Alias)
		if !ok {
			return 0, false
		}
		total = v
	}
	for _, c := range n.Content {
		v, ok := s.expanded(c)
		if !ok {
			return 0, false
		}
		total = min(total+v, s.cap)
	}
	s.size[n] = total
	return total, true
}

// Limit returns err with at most max of its problems: a joined error
// (errors.Join, also nested) is flattened, and past max the rest are
// replaced by one "… and N more problems" line. Summaries of an inner
// Limit are added up, so capping twice still counts every problem. Other
// errors are returned as they are.
func Limit(err error, max int) error {
	if err == nil {
		return nil
	}
	var all []error
	hidden := 0
	flatten(err, &all, &hidden)
	if len(all) <= max && hidden == 0 {
		return err
	}
	if len(all) > max {
		hidden += len(all) - max
		all = all[:max:max]
	}
	return errors.Join(append(all, &moreErrors{n: hidden, shown: len(all)})...)
}

// moreErrors stands for the problems Limit left out.
type moreErrors struct{ n, shown int }

func (m *moreErrors) Error() string {
	return fmt.Sprintf("… and %d more problems (only the first %d are shown)", m.n, m.shown)
}

func flatten(err error, into *[]error, hidden *int) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if e != nil {
				flatten(e, into, hidden)
			}
		}
		return
	}
	// A summary, possibly wrapped with a prefix ("healing: … and N more"),
	// adds to the count; an error that wraps a joined list is one problem.
	for e := err; e != nil; e = errors.Unwrap(e) {
		if m, ok := e.(*moreErrors); ok {
			*hidden += m.n
			return
		}
		if _, ok := e.(interface{ Unwrap() []error }); ok {
			break
		}
	}
	*into = append(*into, err)
}
