package fsstore

import (
	"context"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/idvault/idvault/vault/store"
)

// testHookReadDir, when set by a test, is called with the key-relative
// name of every directory List reads.
var testHookReadDir func(rel string)

// entry is one name in a directory, with the string it sorts by: a
// directory "a" holds only keys that start with "a/", so it sorts as "a/".
type entry struct {
	name, sortKey string
	dir           bool
}

// frame is a directory being walked: its key prefix ("" or "a/b/") and
// the entries not yet visited.
type frame struct {
	prefix string
	ents   []entry
}

// List implements store.Store. It walks the tree depth-first, reading one
// directory at a time when it reaches it and sorting its entries so that
// keys come out in byte order; nothing is read ahead. Keys created or
// deleted during the walk may or may not be yielded; each key that exists
// throughout is yielded exactly once. Files whose names are not valid key
// segments, symbolic links and the private dot-directories are skipped.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := store.ValidPrefix(prefix); err != nil {
			yield("", fmt.Errorf("fsstore: list: %w", err))
			return
		}
		// "a/b/c" starts in directory "a/b" with names beginning "c".
		dirPart, partial := "", prefix
		if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
			dirPart, partial = prefix[:i+1], prefix[i+1:]
		}
		for seg := range strings.SplitSeq(strings.TrimSuffix(dirPart, "/"), "/") {
			if len(seg) > maxSegment {
				return // no such directory can exist
			}
		}
		if err := ctx.Err(); err != nil {
			yield("", fmt.Errorf("fsstore: list: %w", err))
			return
		}
		ents, err := s.readDir(dirPart, partial)
		if err != nil {
			yield("", err)
			return
		}
		stack := []frame{{prefix: dirPart, ents: ents}}
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if len(top.ents) == 0 {
				stack = stack[:len(stack)-1]
				continue
			}
			e := top.ents[0]
			top.ents = top.ents[1:]
			key := top.prefix + e.name
			if err := ctx.Err(); err != nil {
				yield("", fmt.Errorf("fsstore: list: %w", err))
				return
			}
			if e.dir {
				ents, err := s.readDir(key+"/", "")
				if err != nil {
					yield("", err)
					return
				}
				stack = append(stack, frame{prefix: key + "/", ents: ents})
				continue
			}
			if store.ValidKey(key) != nil {
				continue // too long, or otherwise not a key
			}
			if !yield(key, nil) {
				return
			}
		}
	}
}

// readDir returns the entries of the directory holding the keys that
// start with prefix ("" or ending in '/') whose names start with partial,
// sorted as their keys sort. A directory that does not exist, or has just
// been pruned, is empty.
func (s *Store) readDir(prefix, partial string) ([]entry, error) {
	if testHookReadDir != nil {
		testHookReadDir(prefix)
	}
	f, err := os.Open(filepath.Join(s.dir, filepath.FromSlash(prefix)))
	if notExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fsErr("list", prefix, err)
	}
	des, err := f.ReadDir(-1)
	f.Close()
	if notExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fsErr("list", prefix, err)
	}
	ents := make([]entry, 0, len(des))
	for _, de := range des {
		name := de.Name()
		if !strings.HasPrefix(name, partial) || store.ValidKey(name) != nil {
			continue // includes every name starting with '.'
		}
		switch t := de.Type(); {
		case t.IsDir():
			ents = append(ents, entry{name: name, sortKey: name + "/", dir: true})
		case t.IsRegular():
			ents = append(ents, entry{name: name, sortKey: name})
		}
	}
	slices.SortFunc(ents, func(a, b entry) int { return strings.Compare(a.sortKey, b.sortKey) })
	return ents, nil
}
