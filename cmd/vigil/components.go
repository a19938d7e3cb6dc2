package main

// Every collector and section registers itself from its package's init;
// package components is the one place that lists them.
import _ "github.com/vigil-agent/vigil/components"
