//go:build linux

package ebpf

import (
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// TLS libraries a binary is attached for (the library label).
const (
	tlsLibGo      = "go"
	tlsLibOpenSSL = "openssl"
)

// Reasons a process using TLS is not covered (the reason label of
// vigil_ebpf_tls_uncovered_processes).
const (
	uncoveredGoVersion   = "unsupported_go_version" // before Go's register ABI (1.17 amd64, 1.18 arm64)
	uncoveredArch        = "architecture"           // an executable of another architecture than the agent's
	uncoveredNoFunctions = "no_functions"           // crypto/tls in use, its functions found neither in symbols nor in .gopclntab
	uncoveredDisasm      = "disassembly"            // a return instruction could not be found
	uncoveredLimit       = "limit"                  // max_tls_targets reached
	uncoveredAttach      = "attach_failed"          // the kernel refused an uprobe
	uncoveredGnuTLS      = "gnutls"                 // GnuTLS is not followed
	uncoveredNSS         = "nss"                    // NSS is not followed
)

// tlsProbe is one uprobe to attach: the program, where (an offset in the
// file), and its cookie.
type tlsProbe struct {
	prog   string // program.name
	offset uint64
	ret    bool // a uretprobe (C functions only)
	cookie uint64
}

// tlsBinary is what inspecting an executable or library found: the
// probes to attach for its TLS library, or why a binary using TLS is not
// covered; neither for a binary that does not use TLS.
type tlsBinary struct {
	library string
	probes  []tlsProbe
	reason  string
	detail  string // for the log: Go version, where the offsets came from
}

// Go's crypto/tls functions taken.
const (
	goTLSWrite = "crypto/tls.(*Conn).Write"
	goTLSRead  = "crypto/tls.(*Conn).Read"
)

// inspectTLSBinary reads the ELF file at path. Errors are for files that
// cannot be read as ELF at all.
func inspectTLSBinary(path string) (tlsBinary, error) {
	f, err := elf.Open(path)
	if err != nil {
		return tlsBinary{}, err
	}
	defer f.Close()
	if bi, err := buildinfo.ReadFile(path); err == nil {
		return inspectGo(f, bi.GoVersion), nil
	}
	return inspectSSL(f), nil
}

// goMinor is the minor version of a Go release name (go1.22.3 → 22), or 0.
func goMinor(v string) int {
	v, ok := strings.CutPrefix(v, "go1.")
	if !ok {
		return 0
	}
	if i := strings.IndexAny(v, ".-+ "); i >= 0 {
		v = v[:i]
	}
	n, _ := strconv.Atoi(v)
	return n
}

// goFunc is a function's address range in the executable.
type goFunc struct{ entry, end uint64 }

// inspectGo finds crypto/tls.(*Conn).Write and Read in a Go executable:
// from the symbol table, or, in a stripped one, from .gopclntab (which no
// Go executable lacks); Read's return instructions by disassembling it;
// and the offsets of the descriptor behind a tls.Conn.
func inspectGo(f *elf.File, version string) tlsBinary {
	fns, ok := goSymbols(f)
	if !ok {
		fns = goPclntab(f)
	}
	w, okW := fns[goTLSWrite]
	r, okR := fns[goTLSRead]
	if !okW && !okR {
		if fns == nil {
			// Neither a symbol table nor a readable .gopclntab: whether it
			// uses crypto/tls is not known; only a binary that names it
			// counts as not covered.
			if hasSection(f, ".gopclntab") && sectionContains(f, ".gopclntab", goTLSRead) {
				return tlsBinary{library: tlsLibGo, reason: uncoveredNoFunctions}
			}
		}
		return tlsBinary{}
	}
	b := tlsBinary{library: tlsLibGo, detail: version}
	minor := goMinor(version)
	switch {
	case f.Machine == elf.EM_X86_64 && runtime.GOARCH == "amd64":
		if minor < 17 {
			b.reason = uncoveredGoVersion
			return b
		}
	case f.Machine == elf.EM_AARCH64 && runtime.GOARCH == "arm64":
		if minor < 18 {
			b.reason = uncoveredGoVersion
			return b
		}
	default:
		b.reason = uncoveredArch
		return b
	}
	if !okW || !okR {
		b.reason = uncoveredNoFunctions
		return b
	}
	cookie, src := goConnOffsets(f)
	b.detail += ", offsets from " + src
	rets, err := returnOffsets(f, r)
	if err != nil || len(rets) == 0 {
		b.reason = uncoveredDisasm
		b.detail += fmt.Sprintf(", %v", err)
		return b
	}
	wOff, err1 := fileOffset(f, w.entry)
	rOff, err2 := fileOffset(f, r.entry)
	if err1 != nil || err2 != nil {
		b.reason = uncoveredNoFunctions
		return b
	}
	b.probes = append(b.probes, tlsProbe{prog: "go_tls_write", offset: wOff, cookie: cookie},
		tlsProbe{prog: "go_tls_read", offset: rOff, cookie: cookie})
	for _, a := range rets {
		off, err := fileOffset(f, a)
		if err != nil {
			b.reason = uncoveredDisasm
			b.probes = nil
			return b
		}
		b.probes = append(b.probes, tlsProbe{prog: "go_tls_read_ret", offset: off, cookie: cookie})
	}
	return b
}

// goSymbols returns the two functions from the symbol table; ok is false
// without a symbol table (a stripped executable).
func goSymbols(f *elf.File) (map[string]goFunc, bool) {
	syms, err := f.Symbols()
	if err != nil {
		return nil, false
	}
	out := map[string]goFunc{}
	for _, s := range syms {
		if (s.Name == goTLSWrite || s.Name == goTLSRead) && elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 {
			out[s.Name] = goFunc{s.Value, s.Value + s.Size}
		}
	}
	return out, true
}

// goPclntab returns the two functions from .gopclntab, or nil when it
// cannot be read.
func goPclntab(f *elf.File) map[string]goFunc {
	pcln, text := f.Section(".gopclntab"), f.Section(".text")
	if pcln == nil || text == nil {
		return nil
	}
	data, err := pcln.Data()
	if err != nil {
		return nil
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return nil
	}
	out := map[string]goFunc{}
	for _, n := range []string{goTLSWrite, goTLSRead} {
		if fn := tab.LookupFunc(n); fn != nil && fn.End > fn.Entry {
			out[n] = goFunc{fn.Entry, fn.End}
		}
	}
	return out
}

func hasSection(f *elf.File, name string) bool { return f.Section(name) != nil }

func sectionContains(f *elf.File, name, s string) bool {
	sec := f.Section(name)
	if sec == nil {
		return false
	}
	b, err := sec.Data()
	return err == nil && strings.Contains(string(b), s)
}

// maxGoFuncBytes bounds the bytes of a function read to disassemble it.
const maxGoFuncBytes = 64 << 10

// returnOffsets returns the addresses of fn's return instructions.
func returnOffsets(f *elf.File, fn goFunc) ([]uint64, error) {
	if fn.end-fn.entry > maxGoFuncBytes {
		return nil, fmt.Errorf("function of %d bytes", fn.end-fn.entry)
	}
	var sec *elf.Section
	for _, s := range f.Sections {
		if s.Type == elf.SHT_PROGBITS && s.Flags&elf.SHF_EXECINSTR != 0 && s.Addr <= fn.entry && fn.end <= s.Addr+s.Size {
			sec = s
			break
		}
	}
	if sec == nil {
		return nil, errors.New("function outside the executable sections")
	}
	code := make([]byte, fn.end-fn.entry)
	if _, err := sec.ReadAt(code, int64(fn.entry-sec.Addr)); err != nil {
		return nil, err
	}
	var rets []uint64
	switch f.Machine {
	case elf.EM_X86_64:
		for i := 0; i < len(code); {
			inst, err := x86asm.Decode(code[i:], 64)
			if err != nil {
				return nil, fmt.Errorf("decode at +%#x: %w", i, err)
			}
			if inst.Op == x86asm.RET {
				rets = append(rets, fn.entry+uint64(i))
			}
			i += inst.Len
		}
	case elf.EM_AARCH64:
		for i := 0; i+4 <= len(code); i += 4 {
			if binary.LittleEndian.Uint32(code[i:]) == 0xd65f03c0 { // ret (x30)
				rets = append(rets, fn.entry+uint64(i))
			}
		}
	default:
		return nil, fmt.Errorf("machine %v", f.Machine)
	}
	return rets, nil
}

// fileOffset turns a virtual address of an executable segment into its
// offset in the file (what an uprobe is attached at).
func fileOffset(f *elf.File, addr uint64) (uint64, error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && p.Vaddr <= addr && addr < p.Vaddr+p.Memsz {
			return addr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x in no executable segment", addr)
}

// The offsets of Go's layouts from a *tls.Conn to its descriptor, as in
// every Go release from 1.9 to 1.26 on 64-bit platforms: tls.Conn's first
// field is conn net.Conn; a *net.TCPConn's first word is its conn's
// fd *netFD; netFD starts with pfd poll.FD, whose fdmu fdMutex (a uint64
// and two uint32) precedes Sysfd.
var goKnownOffsets = [4]uint64{0, 0, 0, 16}

// goConnOffsets returns the attach cookie for the Go programs: the
// offsets read from the executable's DWARF when it has it, else the known
// layout; and which.
func goConnOffsets(f *elf.File) (uint64, string) {
	off := goKnownOffsets
	src := "the known layout"
	if d, err := f.DWARF(); err == nil {
		if got, ok := dwarfOffsets(d); ok {
			off, src = got, "DWARF"
		}
	}
	cookie := uint64(1) << 63
	for i, o := range off {
		cookie |= (o & 0xff) << (8 * i)
	}
	return cookie, src
}

// dwarfOffsets reads the four offsets from the DWARF of a Go executable.
func dwarfOffsets(d *dwarf.Data) ([4]uint64, bool) {
	want := map[string]struct {
		field string
		i     int
	}{
		"crypto/tls.Conn":  {"conn", 0},
		"net.conn":         {"fd", 1},
		"net.netFD":        {"pfd", 2},
		"internal/poll.FD": {"Sysfd", 3},
	}
	var out [4]uint64
	found := 0
	r := d.Reader()
	for found < len(out) {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag != dwarf.TagStructType {
			if e.Children && e.Tag != dwarf.TagCompileUnit {
				r.SkipChildren()
			}
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		w, ok := want[name]
		if !ok || !e.Children {
			if e.Children {
				r.SkipChildren()
			}
			continue
		}
		for {
			c, err := r.Next()
			if err != nil || c == nil || c.Tag == 0 {
				break
			}
			if c.Tag == dwarf.TagMember {
				if n, _ := c.Val(dwarf.AttrName).(string); n == w.field {
					if loc, ok := c.Val(dwarf.AttrDataMemberLoc).(int64); ok && loc >= 0 && loc < 256 {
						out[w.i] = uint64(loc)
						found++
						delete(want, name)
					}
				}
			}
			if c.Children {
				r.SkipChildren()
			}
		}
	}
	return out, found == 4
}

// The OpenSSL API functions taken: name, entry program, whether it is an
// _ex call (cookie), and the return program.
var sslFuncs = []struct {
	name, entry, ret string
	ex               bool
}{
	{"SSL_write", "ssl_write", "ssl_write_ret", false},
	{"SSL_read", "ssl_read", "ssl_read_ret", false},
	{"SSL_write_ex", "ssl_write", "ssl_write_ret", true},
	{"SSL_read_ex", "ssl_read", "ssl_read_ret", true},
}

// inspectSSL finds OpenSSL's SSL_read and SSL_write (and their _ex forms)
// defined in a library or executable (a libssl, or OpenSSL or BoringSSL
// linked statically: the same API, and the descriptor is not read from
// the SSL object, so its layout does not matter).
func inspectSSL(f *elf.File) tlsBinary {
	defined := map[string]uint64{}
	for _, get := range []func() ([]elf.Symbol, error){f.DynamicSymbols, f.Symbols} {
		syms, err := get()
		if err != nil {
			continue
		}
		for _, s := range syms {
			if !strings.HasPrefix(s.Name, "SSL_") || elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Section == elf.SHN_UNDEF || s.Value == 0 {
				continue
			}
			n, _, _ := strings.Cut(s.Name, "@") // versioned names
			defined[n] = s.Value
		}
	}
	if defined["SSL_write"] == 0 || defined["SSL_read"] == 0 {
		return tlsBinary{}
	}
	b := tlsBinary{library: tlsLibOpenSSL}
	for _, fn := range sslFuncs {
		addr := defined[fn.name]
		if addr == 0 {
			continue // the _ex calls: OpenSSL 1.1.1 and later
		}
		off, err := fileOffset(f, addr)
		if err != nil {
			return tlsBinary{library: tlsLibOpenSSL, reason: uncoveredNoFunctions}
		}
		var cookie uint64
		if fn.ex {
			cookie = 1
		}
		b.probes = append(b.probes, tlsProbe{prog: fn.entry, offset: off, cookie: cookie},
			tlsProbe{prog: fn.ret, offset: off, ret: true})
	}
	return b
}
