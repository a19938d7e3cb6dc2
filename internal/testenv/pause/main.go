//go:build unix

// Command pause is the test node's pod sandbox process, as Kubernetes'
// pause: it holds the pod's namespaces by doing nothing until it is told to
// stop. It blocks forever, exits 0 on SIGINT or SIGTERM, and reaps every
// child that is handed to it: as PID 1 of a pod whose containers share a
// PID namespace, orphaned processes become its children and would otherwise
// stay zombies. internal/testenv builds it as a static binary into the
// image vigil.local/pause:1 (testenv.PauseImage).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("pause (vigil testenv)")
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: warning: not PID 1, orphans are not reparented here")
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	reap()
	for s := range sigs {
		switch s {
		case syscall.SIGINT, syscall.SIGTERM:
			fmt.Fprintf(os.Stderr, "pause: %v, exiting\n", s)
			os.Exit(0)
		case syscall.SIGCHLD:
			reap()
		}
	}
}

// reap collects every child that has exited, without blocking. Several
// SIGCHLD may arrive as one, hence the loop.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
