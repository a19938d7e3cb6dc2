package rules

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	promrules "github.com/prometheus/prometheus/rules"
	"go.yaml.in/yaml/v3"

	"github.com/vigil-agent/vigil/internal/confyaml"
	"github.com/vigil-agent/vigil/rules/defaults"
)

// EmbeddedPrefix marks a rule file name that refers to the default rule
// set built into the binary, e.g. "embedded:node.rules.yml".
const EmbeddedPrefix = "embedded:"

// Parser is the PromQL parser rule files are loaded and evaluated with.
var Parser = parser.NewParser(parser.Options{})

// ExpandRuleFiles resolves paths and globs (and "embedded:" globs) to a
// sorted, de-duplicated list of rule file names. A plain path (no glob
// characters) that does not exist is an error; a glob matching nothing is
// not.
func ExpandRuleFiles(patterns []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	var errs []error
	for _, p := range patterns {
		var matches []string
		if rest, ok := strings.CutPrefix(p, EmbeddedPrefix); ok {
			m, err := fs.Glob(defaults.FS, rest)
			if err != nil {
				errs = append(errs, fmt.Errorf("%q: %w", p, err))
				continue
			}
			for _, f := range m {
				if st, err := fs.Stat(defaults.FS, f); err == nil && st.IsDir() {
					continue
				}
				matches = append(matches, EmbeddedPrefix+f)
			}
			if len(m) == 0 && !hasMeta(rest) {
				errs = append(errs, fmt.Errorf("%q: no such embedded rule file", p))
			}
		} else {
			m, err := filepath.Glob(p)
			if err != nil {
				errs = append(errs, fmt.Errorf("%q: %w", p, err))
				continue
			}
			if len(m) == 0 && !hasMeta(p) {
				errs = append(errs, fmt.Errorf("%q: no such file", p))
			}
			for _, f := range m {
				if st, err := os.Stat(f); err == nil && st.IsDir() && hasMeta(p) {
					continue // a glob also matching directories
				}
				matches = append(matches, f)
			}
		}
		sort.Strings(matches)
		for _, f := range matches {
			if !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	return out, errors.Join(errs...)
}

func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// readRuleFile reads a rule file from disk or from the embedded set.
func readRuleFile(name string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(name, EmbeddedPrefix); ok {
		return fs.ReadFile(defaults.FS, path.Clean(rest))
	}
	return os.ReadFile(name)
}

// RuleSet is a loaded, validated set of rule files.
type RuleSet struct {
	Files  []string
	Groups map[string]*rulefmt.RuleGroups
	// Digest changes whenever any file's content changes.
	Digest string
}

// LoadRuleFiles reads and validates rule files. Every problem is returned,
// each naming the file, line, group, rule and what is wrong.
func LoadRuleFiles(files ...string) (*RuleSet, error) {
	rs := &RuleSet{Files: files, Groups: map[string]*rulefmt.RuleGroups{}}
	h := sha256.New()
	var errs []error
	for _, f := range files {
		data, err := readRuleFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		h.Write([]byte(f))
		h.Write([]byte{0})
		h.Write(data)
		h.Write([]byte{0})
		rgs, ferrs := ParseRules(f, data)
		errs = append(errs, ferrs...)
		rs.Groups[f] = rgs
	}
	rs.Digest = hex.EncodeToString(h.Sum(nil))
	if len(errs) > 0 {
		return nil, confyaml.Limit(errors.Join(errs...), confyaml.MaxErrors)
	}
	return rs, nil
}

// ParseRules parses one rule file: a Prometheus rule file, or a
// PrometheusRule object (apiVersion monitoring.coreos.com/v1) whose spec is
// one. Errors are prefixed with file and carry line numbers of the original
// file.
func ParseRules(file string, data []byte) (*rulefmt.RuleGroups, []error) {
	content, err := ruleContent(data)
	if err != nil {
		return nil, []error{fmt.Errorf("%s: %w", file, err)}
	}
	rgs, errs := rulefmt.Parse(content, false, model.UTF8Validation, Parser, slog.New(slog.DiscardHandler))
	for i := range errs {
		errs[i] = fmt.Errorf("%s: %w", file, errs[i])
	}
	if len(errs) > 0 {
		return nil, errs
	}
	// A subquery of too many steps would exhaust memory at its first
	// evaluation; a subquery without a step is counted at one second.
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			expr, err := Parser.ParseExpr(r.Expr)
			if err != nil {
				continue
			}
			if err := CheckQuerySteps(expr, time.Second); err != nil {
				errs = append(errs, fmt.Errorf("%s: group %q, rule %q: %w", file, g.Name, r.Record+r.Alert, err))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return rgs, nil
}

// ruleContent returns the rule-file document within data: data itself for
// a rule file, the spec of a PrometheusRule object. The spec is cut out
// with its original line numbers (other lines blanked) so errors point into
// the user's file.
func ruleContent(data []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return data, nil // rulefmt reports the syntax error (or an empty file)
	}
	// rulefmt decodes and walks the document with its aliases expanded:
	// refuse one that aliases multiply before it gets there.
	if err := confyaml.CheckAliases("", &doc, confyaml.MaxAliasNodes); err != nil {
		return nil, err
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return data, nil
	}
	var kind, apiVersion string
	var spec *yaml.Node
	var specKey int
	nextKeyLine := 0
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "kind":
			kind = v.Value
		case "apiVersion":
			apiVersion = v.Value
		case "spec":
			spec = v
			specKey = i
		}
	}
	if kind == "" && apiVersion == "" {
		return data, nil
	}
	if kind != "PrometheusRule" || !strings.HasPrefix(apiVersion, "monitoring.coreos.com/") {
		return nil, fmt.Errorf("a %s/%s object is not a rule file (want kind PrometheusRule, apiVersion monitoring.coreos.com/v1, or a plain rule file)", apiVersion, kind)
	}
	if spec == nil {
		return nil, errors.New("PrometheusRule has no spec")
	}
	if spec.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%d:%d: PrometheusRule spec must be a mapping", spec.Line, spec.Column)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if l := root.Content[i].Line; i > specKey && (nextKeyLine == 0 || l < nextKeyLine) {
			nextKeyLine = l
		}
	}
	if spec.Style&yaml.FlowStyle != 0 || len(spec.Content) == 0 || spec.Content[0].Line <= root.Content[specKey].Line {
		// Flow style: re-encode (line numbers then refer to the spec).
		return yaml.Marshal(spec)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	var out bytes.Buffer
	for i, l := range lines {
		n := i + 1
		if n >= spec.Content[0].Line && (nextKeyLine == 0 || n < nextKeyLine) {
			out.Write(l)
		} else if bytes.HasSuffix(l, []byte("\n")) {
			out.WriteByte('\n')
		}
	}
	return out.Bytes(), nil
}

// groupLoader is the rule manager's GroupLoader: it reads embedded files
// and PrometheusRule objects as well as plain rule files.
type groupLoader struct{}

func (groupLoader) Load(identifier string, _ bool, _ model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	data, err := readRuleFile(identifier)
	if err != nil {
		return nil, []error{fmt.Errorf("%s: %w", identifier, err)}
	}
	return ParseRules(identifier, data)
}

func (groupLoader) Parse(query string) (parser.Expr, error) { return Parser.ParseExpr(query) }

// GroupLoader returns the loader the rule manager (and `vigil rules test`)
// uses for rule files: plain files, PrometheusRule objects and embedded
// files.
func GroupLoader() promrules.GroupLoader {
	return groupLoader{}
}
