// Command hello is the static binary that internal/image's tests wrap into
// images: it prints a greeting and the value set with -ldflags -X.
package main

import (
	"fmt"
	"runtime"
)

// greeting is set by the tests with -ldflags "-X main.greeting=…".
var greeting = "hello"

func main() {
	fmt.Println(greeting, runtime.GOOS+"/"+runtime.GOARCH)
}
