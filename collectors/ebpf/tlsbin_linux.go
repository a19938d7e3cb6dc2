//go:build linux

package ebpf

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
	uncoveredPrivilege   = "no_privilege"           // the kernel refuses uprobes to the agent (CAP_SYS_ADMIN, without uprobe_multi)
	uncoveredGnuTLS      = "gnutls"                 // GnuTLS is not followed
	uncoveredNSS         = "nss"                    // NSS is not followed
	uncoveredNoAccess    = "no_access"              // the executable of another user's process is not readable (CAP_SYS_PTRACE)
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
			if sec := f.Section(".gopclntab"); sec != nil && len(findStrings(sec, goTLSRead)) > 0 {
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
	syms, ok := findSymbols(f, elf.SHT_SYMTAB, []string{goTLSWrite, goTLSRead})
	if !ok {
		return nil, false
	}
	out := map[string]goFunc{}
	for n, s := range syms {
		if s.Size > 0 {
			out[n] = goFunc{s.Value, s.Value + s.Size}
		}
	}
	return out, true
}

// goPclntab returns the two functions from .gopclntab (Go 1.18+'s
// layout), or nil when it cannot be read. It reads the header, finds the
// names in the function name table, and walks the function table for the
// entries naming them, a block at a time: debug/gosym would build a table
// of every function (175 MB allocated for a 119 MB kube-apiserver).
func goPclntab(f *elf.File) map[string]goFunc {
	pcln := f.Section(".gopclntab")
	if pcln == nil || pcln.Size > maxPclntabBytes {
		return nil
	}
	r := &blockReader{r: pcln, size: int64(pcln.Size)}
	var hdr [8]byte
	if r.read(hdr[:], 0) != nil {
		return nil
	}
	bo := f.ByteOrder
	magic := bo.Uint32(hdr[0:4])
	ptr := int64(hdr[7])
	if (magic != 0xfffffff0 && magic != 0xfffffff1) || (ptr != 8 && ptr != 4) {
		return nil // before Go 1.18: not a register-ABI build anyway
	}
	word := func(i int64) (uint64, bool) {
		var b [8]byte
		if r.read(b[:ptr], 8+i*ptr) != nil {
			return 0, false
		}
		if ptr == 4 {
			return uint64(bo.Uint32(b[:4])), true
		}
		return bo.Uint64(b[:]), true
	}
	// pcHeader: magic, pads, minLC, ptrSize, then nfunc, nfiles,
	// textStart, funcnameOffset, cuOffset, filetabOffset, pctabOffset,
	// pclnOffset (the function table). textStart is taken from .text, as
	// debug/gosym does: in a PIE it is left for the dynamic loader.
	text := f.Section(".text")
	nfunc, ok1 := word(0)
	nameTab, ok3 := word(3)
	funcTab, ok4 := word(7)
	if text == nil || !ok1 || !ok3 || !ok4 || nfunc > 1<<24 {
		return nil
	}
	textStart := text.Addr
	want := map[int32]string{}
	for _, n := range []string{goTLSWrite, goTLSRead} {
		for _, o := range findStrings(pcln, n) {
			if int64(o) >= int64(nameTab) {
				want[int32(int64(o)-int64(nameTab))] = n
			}
		}
	}
	out := map[string]goFunc{}
	if len(want) == 0 {
		return out
	}
	var e [16]byte
	for i := uint64(0); i < nfunc; i++ {
		// functab: {entryoff, funcoff uint32} per function, then the end.
		if r.read(e[:16], int64(funcTab)+int64(i)*8) != nil {
			return nil
		}
		entry, fOff, next := bo.Uint32(e[0:4]), bo.Uint32(e[4:8]), bo.Uint32(e[8:12])
		var fn [8]byte // _func: entryoff uint32, nameoff int32
		if r.read(fn[:], int64(funcTab)+int64(fOff)) != nil {
			return nil
		}
		if n, ok := want[int32(bo.Uint32(fn[4:8]))]; ok && next > entry {
			out[n] = goFunc{textStart + uint64(entry), textStart + uint64(next)}
			if len(out) == 2 {
				break
			}
		}
	}
	return out
}

// blockReader reads a section through a cache of one 64 KB block: the
// function table and the records it points to are read mostly in order.
type blockReader struct {
	r     io.ReaderAt
	size  int64
	block []byte
	at    int64
}

func (b *blockReader) read(p []byte, off int64) error {
	const bs = 64 << 10
	if off < 0 || off+int64(len(p)) > b.size {
		return io.ErrUnexpectedEOF
	}
	if b.block == nil || off < b.at || off+int64(len(p)) > b.at+int64(len(b.block)) {
		b.at = off
		n := min(int64(bs), b.size-off)
		if b.block == nil {
			b.block = make([]byte, bs)
		}
		b.block = b.block[:n]
		if _, err := b.r.ReadAt(b.block, off); err != nil && !errors.Is(err, io.EOF) {
			b.block = nil
			return err
		}
	}
	copy(p, b.block[off-b.at:])
	return nil
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
	// Reading DWARF loads and inflates every debug section: only for
	// executables whose debug information is small.
	if info := f.Section(".debug_info"); info != nil && info.Size <= maxDWARFBytes {
		d, err := f.DWARF()
		if err != nil {
			return uint64(1)<<63 | packOffsets(off), src
		}
		if got, ok := dwarfOffsets(d); ok {
			off, src = got, "DWARF"
		}
	}
	return uint64(1)<<63 | packOffsets(off), src
}

// maxDWARFBytes bounds the .debug_info an executable may have for its
// DWARF to be read (compressed size; the other debug sections come too).
const maxDWARFBytes = 16 << 20

// maxPclntabBytes bounds the .gopclntab read to find the functions of a
// stripped executable.
const maxPclntabBytes = 64 << 20

func packOffsets(off [4]uint64) uint64 {
	var c uint64
	for i, o := range off {
		c |= (o & 0xff) << (8 * i)
	}
	return c
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
	names := make([]string, 0, len(sslFuncs))
	for _, fn := range sslFuncs {
		names = append(names, fn.name)
	}
	for _, typ := range []elf.SectionType{elf.SHT_DYNSYM, elf.SHT_SYMTAB} {
		syms, _ := findSymbols(f, typ, names)
		for n, s := range syms {
			if defined[n] == 0 {
				defined[n] = s.Value
			}
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

// findSymbols looks up the named function symbols of the symbol table of
// type typ (SHT_SYMTAB or SHT_DYNSYM) without loading the table: the
// string table is searched for each name, then the table is read through
// for entries pointing at those strings. Memory stays bounded whatever
// the binary's size (a Go executable of hundreds of MB has hundreds of
// thousands of symbols). ok is false when the file has no such table.
func findSymbols(f *elf.File, typ elf.SectionType, names []string) (map[string]elf.Symbol, bool) {
	var tab *elf.Section
	for _, s := range f.Sections {
		if s.Type == typ {
			tab = s
			break
		}
	}
	if tab == nil || int(tab.Link) >= len(f.Sections) || f.Class != elf.ELFCLASS64 {
		return nil, false
	}
	strs := f.Sections[tab.Link]
	offs := map[uint32]string{}
	for _, n := range names {
		for _, o := range findStrings(strs, n) {
			offs[o] = n
		}
	}
	out := map[string]elf.Symbol{}
	if len(offs) == 0 {
		return out, true
	}
	r := bufio.NewReaderSize(tab.Open(), 64<<10)
	var e [24]byte // Elf64_Sym
	bo := f.ByteOrder
	for {
		if _, err := io.ReadFull(r, e[:]); err != nil {
			break
		}
		n, ok := offs[bo.Uint32(e[0:4])]
		if !ok {
			continue
		}
		s := elf.Symbol{Name: n, Info: e[4], Other: e[5], Section: elf.SectionIndex(bo.Uint16(e[6:8])),
			Value: bo.Uint64(e[8:16]), Size: bo.Uint64(e[16:24])}
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Section == elf.SHN_UNDEF || s.Value == 0 {
			continue
		}
		out[n] = s
	}
	return out, true
}

// findStrings returns the offsets in a string table of the strings equal
// to name, or to name@version (a versioned dynamic symbol), reading the
// table in chunks.
func findStrings(strs *elf.Section, name string) []uint32 {
	var out []uint32
	r := strs.Open()
	const chunk = 1 << 20
	buf := make([]byte, 0, chunk+len(name)+64)
	base := 0 // table offset of buf[0]
	// Not anchored at a preceding NUL: a linker may point a name into
	// the tail of a longer string; entries are matched by exact offset.
	pat := []byte(name)
	for {
		n, err := io.ReadFull(r, buf[len(buf):cap(buf)][:chunk])
		buf = buf[:len(buf)+n]
		for i := 0; ; {
			j := bytes.Index(buf[i:], pat)
			if j < 0 {
				break
			}
			end := i + j + len(pat)
			if end < len(buf) && (buf[end] == 0 || buf[end] == '@') {
				out = append(out, uint32(base+i+j))
			}
			i += j + 1
		}
		if err != nil {
			break
		}
		// Keep the tail that may hold the start of a match.
		keep := min(len(pat)+64, len(buf))
		base += len(buf) - keep
		copy(buf, buf[len(buf)-keep:])
		buf = buf[:keep]
	}
	return out
}
