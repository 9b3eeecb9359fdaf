package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/idvault/idvault/vault/store"
)

// Head is a signed tree head of one log: a checkpoint as stored, for
// someone outside the store to keep (a witness, a cron job), so that
// records erased later with their checkpoints are still caught.
type Head struct {
	Log   string
	Tree  tlog.Tree
	Time  time.Time
	Final bool   // written by Close
	Note  []byte // the signed note, exactly as stored (golang.org/x/mod/sumdb/note)
}

// maxHeadsNotes bounds the notes ParseHeads accepts.
const maxHeadsNotes = 1 << 20

// Heads returns the latest checkpoint of every log in st whose signature
// verifies with verifierKey, sorted by log ID. It checks signatures only,
// not the records (that is Verify's job), and reads one checkpoint per log
// unless the latest ones are damaged.
func Heads(ctx context.Context, st store.Store, verifierKey string) ([]Head, error) {
	known, err := parseVerifiers(verifierKey)
	if err != nil {
		return nil, err
	}
	logs, _, _, err := listLogs(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("audit: heads: %w", err)
	}
	var heads []Head
	for _, log := range logs {
		if !ValidLogID(log) {
			continue
		}
		var keys []string
		for k, err := range st.List(ctx, checkpointPrefix(log)) {
			if err != nil {
				return nil, fmt.Errorf("audit: heads: %w", err)
			}
			keys = append(keys, k)
		}
		for i := len(keys) - 1; i >= 0; i-- {
			msg, err := readSmall(ctx, st, keys[i], maxCheckpointLen)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("audit: heads: %w", err)
			}
			c, _, err := openCheckpoint(msg, known)
			if err != nil || c.log != log || keys[i] != checkpointKeyOf(c) {
				continue
			}
			heads = append(heads, Head{Log: log, Tree: c.tree, Time: c.time, Final: c.final, Note: msg})
			break
		}
	}
	sort.Slice(heads, func(i, j int) bool { return heads[i].Log < heads[j].Log })
	return heads, nil
}

// FormatHeads writes heads in the witness format ParseHeads reads: each
// note as stored, followed by a blank line.
func FormatHeads(heads []Head) []byte {
	var b bytes.Buffer
	for _, h := range heads {
		b.Write(h.Note)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ParseHeads reads a witness file: signed checkpoint notes as FormatHeads
// (and "idvault audit checkpoint") writes them, each followed by a blank
// line. Every note must verify with verifierKey and parse, and there must
// be at least one: an empty witness vouches for nothing, which is what
// someone who truncated it would want. The error wraps ErrCorrupt and
// names the note by position. Of several heads of one log, the largest is
// kept. A state chain entry in the file is an error here: ParseWitness
// reads those too.
func ParseHeads(b []byte, verifierKey string) ([]Head, error) {
	heads, _, err := parseWitness(b, verifierKey, false)
	return heads, err
}

// ParseWitness reads a witness file like ParseHeads, and also the state
// chain entries in it (as LatestState returns them, exactly as stored): it
// returns the head of the longest, to pass as VerifyOptions.State. Two
// entries of one length that differ are an error.
func ParseWitness(b []byte, verifierKey string) ([]Head, StateHead, error) {
	return parseWitness(b, verifierKey, true)
}

func parseWitness(b []byte, verifierKey string, withState bool) ([]Head, StateHead, error) {
	var sh StateHead
	known, err := parseVerifiers(verifierKey)
	if err != nil {
		return nil, sh, err
	}
	text := string(b)
	if strings.TrimSpace(text) == "" {
		return nil, sh, corruptf("witness file holds no signed checkpoint")
	}
	if !strings.HasSuffix(text, "\n") {
		return nil, sh, corruptf("witness file does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	byLog := map[string]Head{}
	for i, n := 0, 0; i < len(lines); n++ {
		if n >= maxHeadsNotes {
			return nil, sh, corruptf("witness file holds more than %d notes", maxHeadsNotes)
		}
		// Text lines, a blank line, signature lines, a blank line (or the end).
		start := i
		for i < len(lines) && lines[i] != "" {
			i++
		}
		if i == start || i >= len(lines) {
			return nil, sh, corruptf("witness note %d is not a signed note", n+1)
		}
		i++ // the blank line between text and signatures
		sigStart := i
		for i < len(lines) && strings.HasPrefix(lines[i], "— ") {
			i++
		}
		if i == sigStart {
			return nil, sh, corruptf("witness note %d has no signature", n+1)
		}
		msg := strings.Join(lines[start:i], "\n") + "\n"
		if i < len(lines) {
			if lines[i] != "" {
				return nil, sh, corruptf("witness note %d is not followed by a blank line", n+1)
			}
			i++
		}
		if withState && lines[start] == stateHeader {
			e, err := openStateEntry([]byte(msg), known)
			if err != nil {
				return nil, sh, fmt.Errorf("%w: witness note %d: %s", ErrCorrupt, n+1, strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": "))
			}
			h := StateHead{Length: e.Seq, Hash: HashState([]byte(msg))}
			switch {
			case h.Length == sh.Length && h.Hash != sh.Hash:
				return nil, sh, fmt.Errorf("%w: witness note %d and an earlier one are two state chain entries %d", ErrCorrupt, n+1, h.Length)
			case h.Length > sh.Length:
				sh = h
			}
			continue
		}
		c, _, err := openCheckpoint([]byte(msg), known)
		if err != nil {
			return nil, sh, fmt.Errorf("%w: witness note %d: %s", ErrCorrupt, n+1, strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": "))
		}
		h := Head{Log: c.log, Tree: c.tree, Time: c.time, Final: c.final, Note: []byte(msg)}
		if old, ok := byLog[c.log]; ok {
			if old.Tree.N == h.Tree.N && old.Tree.Hash != h.Tree.Hash {
				return nil, sh, fmt.Errorf("%w: witness notes %d and an earlier one sign two trees of size %d of log %s", ErrCorrupt, n+1, h.Tree.N, c.log)
			}
			if old.Tree.N > h.Tree.N || old.Tree.N == h.Tree.N && (old.Final || !h.Final) {
				continue
			}
		}
		byLog[c.log] = h
	}
	heads := make([]Head, 0, len(byLog))
	for _, h := range byLog {
		heads = append(heads, h)
	}
	sort.Slice(heads, func(i, j int) bool { return heads[i].Log < heads[j].Log })
	return heads, sh, nil
}

// LatestState reads the whole state chain in st, checking every signature
// and link, and returns its head and its last entry exactly as stored (a
// signed note, for a witness file beside FormatHeads' notes; nil when the
// chain is empty). A broken chain is an error wrapping ErrStateBroken.
// Memory: one entry.
func LatestState(ctx context.Context, st store.Store, verifierKey string) (StateHead, []byte, error) {
	r, err := NewStateReader(st, verifierKey)
	if err != nil {
		return StateHead{}, nil, err
	}
	var last []byte
	keep := func(_ StateEntry, b []byte) error {
		last = append(last[:0], b...)
		return nil
	}
	for attempt := 0; ; attempt++ {
		n, err := r.Next(ctx, keep)
		if err != nil {
			return StateHead{}, nil, err
		}
		// An entry written after Next stopped looks like a gap until it
		// is read as well.
		err = r.CheckGap(ctx)
		if err == nil {
			return StateHead{Length: r.Len(), Hash: r.Head()}, last, nil
		}
		if !errors.Is(err, ErrStateBroken) || attempt >= 2 || (attempt > 0 && n == 0) {
			return StateHead{}, nil, err
		}
	}
}

// VerifiedSizes returns, per log, how many of its first records Verify
// found covered by a valid checkpoint (LogReport.Verified.N): the value for
// Filter.Verified.
func (r *Report) VerifiedSizes() map[string]int64 {
	m := make(map[string]int64, len(r.Logs))
	for _, l := range r.Logs {
		m[l.Log] = l.Verified.N
	}
	return m
}
