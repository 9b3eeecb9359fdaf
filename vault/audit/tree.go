package audit

import "golang.org/x/mod/sumdb/tlog"

// frontier is the right edge of a Merkle tree in the tlog (RFC 6962)
// shape: the roots of the perfect subtrees that make up the first n leaves,
// largest first, one per set bit of n. It is all an appender or a verifier
// needs to extend the tree and compute its root: O(log n) hashes, never
// every leaf.
type frontier struct {
	n      int64
	hashes []tlog.Hash
}

// add appends one leaf hash.
func (f *frontier) add(h tlog.Hash) {
	f.hashes = append(f.hashes, h)
	// Each trailing 1 bit of the old size completes a subtree.
	for k := f.n; k&1 == 1; k >>= 1 {
		l := len(f.hashes) - 2
		f.hashes[l] = tlog.NodeHash(f.hashes[l], f.hashes[l+1])
		f.hashes = f.hashes[:l+1]
	}
	f.n++
}

// root returns the tree hash of the first n leaves (tlog.TreeHash).
func (f *frontier) root() tlog.Hash {
	if len(f.hashes) == 0 {
		return tlog.Hash{}
	}
	h := f.hashes[len(f.hashes)-1]
	for i := len(f.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(f.hashes[i], h)
	}
	return h
}

func (f *frontier) tree() tlog.Tree { return tlog.Tree{N: f.n, Hash: f.root()} }

func (f *frontier) clone() frontier {
	return frontier{n: f.n, hashes: append([]tlog.Hash(nil), f.hashes...)}
}
