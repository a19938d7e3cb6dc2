package logs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// filePos is where reading of one file resumes.
type filePos struct {
	Dev    uint64 `json:"dev"`
	Inode  uint64 `json:"inode"`
	Offset int64  `json:"offset"`
}

// positions is the content of the positions file. Seq is the sequence
// number of the last disk-buffer record these positions include: on start,
// records after it are replayed so that the positions match the buffer
// exactly, even after a SIGKILL between a buffer write and a positions
// write.
type positions struct {
	Seq   uint64             `json:"seq"`
	Files map[string]filePos `json:"files"`
}

// loadPositions reads the positions file; a missing file is an empty set.
// A corrupt file is an error naming the file: the agent refuses to guess.
func loadPositions(path string) (*positions, error) {
	p := &positions{Files: map[string]filePos{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("positions file %s: %w (move it away to start reading files from the beginning)", path, err)
	}
	if p.Files == nil {
		p.Files = map[string]filePos{}
	}
	return p, nil
}

// writeFileAtomic replaces path with data so that a reader (or a restart
// after a crash) sees either the old or the new content, never a mix: the
// data goes to a temporary file in the same folder, which is renamed over
// path. With sync, the file and the folder are fsynced too, so the new
// content also survives a power loss.
func writeFileAtomic(path string, data []byte, sync bool) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if sync {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if sync {
		if d, err := os.Open(dir); err == nil {
			err = d.Sync()
			d.Close()
			return err
		}
	}
	return nil
}

// save writes the positions file atomically.
func (p *positions) save(path string, sync bool) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data, sync)
}
