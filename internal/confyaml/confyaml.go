// Package confyaml decodes Vigil's YAML files strictly: unknown keys and
// wrong types are errors that name the file, the line and the field path,
// and ${VAR} references are expanded from the environment before parsing.
// The configuration loader, the remediation policy loader and every
// component's configuration section share it, so a typo is reported the
// same way wherever it is made.
package confyaml

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is one problem found in a file. Line and Column are 1-based and zero
// when unknown.
type Error struct {
	File   string
	Line   int
	Column int
	// Path is the dotted field path, e.g. "collectors.host.ignored_mounts".
	Path string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(":")
		if e.Column > 0 {
			b.WriteString(strconv.Itoa(e.Column))
			b.WriteString(":")
		}
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// ExpandEnv replaces ${VAR} and ${VAR:-default} with values from lookup
// (os.LookupEnv when nil); "$$" stands for a literal "$". A variable that is
// unset and has no default is an error naming its line, so a missing secret
// never silently becomes an empty string. A bare $VAR is left alone, since
// regular expressions in configuration use "$".
func ExpandEnv(file string, data []byte, lookup func(string) (string, bool)) ([]byte, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var errs []error
	lines := strings.SplitAfter(string(data), "\n")
	for i, line := range lines {
		lines[i] = envRef.ReplaceAllStringFunc(line, func(m string) string {
			if m == "$$" {
				return "$"
			}
			sub := envRef.FindStringSubmatch(m)
			if v, ok := lookup(sub[1]); ok {
				return v
			}
			if sub[2] != "" {
				return sub[3]
			}
			errs = append(errs, &Error{File: file, Line: i + 1, Msg: fmt.Sprintf("environment variable %s is not set (use ${%s:-default} for a default)", sub[1], sub[1])})
			return m
		})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return []byte(strings.Join(lines, "")), nil
}

// Parse expands environment references in data and parses it into a YAML
// node tree. An empty document yields a nil node and no error. A document
// whose aliases would expand it by more than MaxAliasNodes nodes is
// refused (see CheckAliases).
func Parse(file string, data []byte) (*yaml.Node, error) {
	data, err := ExpandEnv(file, data, nil)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(file, "", err)
	}
	if err := CheckAliases(file, &doc, MaxAliasNodes); err != nil {
		return nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	if doc.Kind == yaml.DocumentNode {
		return doc.Content[0], nil
	}
	return &doc, nil
}

// Decode decodes node into out (a pointer), rejecting keys that out's type
// does not have. path is the field path of node, used in messages. Values
// already in out act as defaults for keys the node does not set.
func Decode(file, path string, node *yaml.Node, out any) error {
	if node == nil {
		return nil
	}
	var errs []error
	checkKnown(file, path, node, reflect.TypeOf(out), &errs)
	if len(errs) > 0 {
		return Limit(errors.Join(errs...), MaxErrors)
	}
	if err := node.Decode(out); err != nil {
		return yamlError(file, path, err)
	}
	return nil
}

var lineRe = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError turns yaml.v3's errors ("line 3: cannot unmarshal …") into
// Errors that carry the file name.
func yamlError(file, path string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var errs []error
	for _, m := range msgs {
		e := &Error{File: file, Path: path, Msg: strings.TrimPrefix(m, "yaml: ")}
		if sub := lineRe.FindStringSubmatch(m); sub != nil {
			e.Line, _ = strconv.Atoi(sub[1])
			e.Msg = sub[2]
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

var (
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	nodeType        = reflect.TypeOf(yaml.Node{})
)

// checkKnown walks node alongside t and reports mapping keys that t has no
// field for. Types with their own UnmarshalYAML are trusted to check
// themselves.
func checkKnown(file, path string, node *yaml.Node, t reflect.Type, errs *[]error) {
	if node == nil || t == nil {
		return
	}
	if node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	if node.Kind == yaml.DocumentNode && len(node.Content) > 0 {
		node = node.Content[0]
	}
	if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
		if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
			return
		}
	}
	if t == nodeType {
		return // decoded later by whoever asked for the raw node
	}
	switch t.Kind() {
	case reflect.Struct:
		if node.Kind != yaml.MappingNode {
			return // node.Decode reports the type mismatch
		}
		fields := map[string]reflect.Type{}
		collectFields(t, fields)
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, &Error{File: file, Line: k.Line, Column: k.Column, Path: join(path, k.Value),
					Msg: "unknown field" + suggest(k.Value, fields)})
				continue
			}
			checkKnown(file, join(path, k.Value), v, ft, errs)
		}
	case reflect.Map:
		if node.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			checkKnown(file, join(path, node.Content[i].Value), node.Content[i+1], t.Elem(), errs)
		}
	case reflect.Slice, reflect.Array:
		if node.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range node.Content {
			checkKnown(file, fmt.Sprintf("%s[%d]", path, i), c, t.Elem(), errs)
		}
	}
}

// collectFields maps YAML keys to field types, following yaml.v3's rules:
// the key is the tag's name or the lower-cased field name, ",inline"
// structs contribute their own fields, "-" is skipped.
func collectFields(t reflect.Type, into map[string]reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				collectFields(ft, into)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		into[name] = f.Type
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest names the closest known key when the unknown one is a likely
// typo, and lists the known keys otherwise.
func suggest(key string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	best, bestD := "", 3
	for _, n := range names {
		if d := distance(key, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	if len(names) == 0 {
		return ""
	}
	return " (known fields: " + strings.Join(names, ", ") + ")"
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
