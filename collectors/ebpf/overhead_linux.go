//go:build linux

package ebpf

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/vigil-agent/vigil/internal/overhead"
)

// The collector is the overhead governor's main lever (internal/overhead):
// it reports its programs' kernel run time and sheds load by level.
var (
	_ overhead.Shedder      = (*collector)(nil)
	_ overhead.KernelCoster = (*collector)(nil)
)

// shedState is the level the governor set, read on the hot paths.
type shedState struct{ level atomic.Int32 }

func (s *shedState) get() overhead.Level {
	if s == nil {
		return overhead.LevelNone
	}
	return overhead.Level(s.level.Load())
}

// SetShedLevel implements overhead.Shedder: spans are divided in the HTTP
// reader, the readers' poll interval multiplied, and the kernel's HTTP
// sampling set in the http_control map.
func (c *collector) SetShedLevel(l overhead.Level) {
	if c.shed.level.Swap(int32(l)) == int32(l) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.objs == nil {
		return
	}
	c.setHTTPControl(l)
}

// setHTTPControl writes the kernel's part of level l; c.mu is held.
func (c *collector) setHTTPControl(l overhead.Level) {
	m := c.objs.maps["http_control"]
	if m == nil {
		return
	}
	v := vigilVigilHttpControl{SampleShift: l.HTTPSampleShift(), HeadWindows: l.HTTPHeadWindows()}
	if err := m.Put(uint32(0), &v); err != nil {
		c.log.Warn("cannot set the kernel's HTTP sampling", "level", l.String(), "err", err)
	}
}

// pollInterval is the readers' poll interval at the current level.
func (c *collector) pollInterval() time.Duration {
	return c.cfg.PollInterval * time.Duration(c.shed.get().IntervalFactor())
}

// ProgramCosts implements overhead.KernelCoster: each loaded program's
// kernel run time and count (which grow only while BPF statistics are
// enabled).
func (c *collector) ProgramCosts() ([]overhead.ProgramCost, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.objs == nil {
		return nil, nil
	}
	out := make([]overhead.ProgramCost, 0, len(c.objs.progs))
	for name, p := range c.objs.progs {
		st, err := p.Stats()
		if err != nil {
			return nil, err
		}
		out = append(out, overhead.ProgramCost{Name: name, RunTime: st.Runtime, RunCount: st.RunCount})
	}
	return out, nil
}

// spanSampling returns the span sampling bound and rate cap at the
// current level: both divided by the level's divisor (a rate of 0, no
// cap, stays uncapped).
func spanSampling(ratioMax uint64, rate float64, l overhead.Level) (uint64, float64) {
	d := l.SpanDivisor()
	if d <= 1 {
		return ratioMax, rate
	}
	if ratioMax == math.MaxUint64 {
		return math.MaxUint64 / uint64(d), rate / float64(d)
	}
	return ratioMax / uint64(d), rate / float64(d)
}
