package capability

import (
	"runtime"
	"testing"
)

// BenchmarkCurrent is what the agent's capability metrics cost at every
// scrape and every rules ingest.
func BenchmarkCurrent(b *testing.B) {
	for b.Loop() {
		if _, err := Current(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCurrentSeesTheKernelsCapabilities(t *testing.T) {
	st, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	// Every capability the kernel knows is in a root process's bounding
	// set unless something dropped it; at least CAP_CHOWN (0) and the
	// highest one the kernel knows are named.
	if !KernelKnows(0) || KernelKnows(lastCap()+1) {
		t.Errorf("KernelKnows disagrees with cap_last_cap %d", lastCap())
	}
	if st.Bounding == 0 {
		t.Errorf("empty bounding set: %+v", st)
	}
}

// The thread's status file and the kernel's prctl answers agree.
func TestThreadStatusAgreesWithPrctl(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, a, nnp, ok := threadStatus()
	if !ok {
		t.Fatal("/proc/thread-self/status has no CapBnd, CapAmb or NoNewPrivs")
	}
	pb, pa, pnnp := prctlSets()
	if b != pb || a != pa || nnp != pnnp {
		t.Errorf("status: bounding %s ambient %s nnp %v; prctl: bounding %s ambient %s nnp %v", b, a, nnp, pb, pa, pnnp)
	}
	if b == 0 {
		t.Error("empty bounding set")
	}
}
