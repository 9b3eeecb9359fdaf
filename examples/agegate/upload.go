package main

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/idvault/idvault/vault"
)

// documentKinds are the documents a member may upload, with their labels.
// The back of a national ID card (it carries the national ID number) is
// deliberately not among them.
var documentKinds = []struct{ Value, Label string }{
	{"drivers-license", "Driver's licence"},
	{"passport", "Passport (photo page)"},
	{"insurance-card", "Health-insurance card"},
	{"national-id-front", "National ID card (front only)"},
}

func kindLabel(v string) string {
	for _, k := range documentKinds {
		if k.Value == v {
			return k.Label
		}
	}
	return v
}

// uploadTypes are the image types accepted from the browser: what a phone
// camera or a scanner produces and a reviewer's browser can show.
var uploadTypes = map[string]bool{vault.TypeJPEG: true, vault.TypePNG: true, vault.TypeWebP: true}

// multipartOverhead is what the form adds around the image: boundaries,
// part headers and the small fields.
const multipartOverhead = 16 << 10

// memberPage is the data of the member template.
type memberPage struct {
	Status    memberStatus
	Kinds     []struct{ Value, Label string }
	MaxUpload int64
	Just      bool // just uploaded
}

func (a *App) handleMember(w http.ResponseWriter, r *http.Request) {
	acct := accountFrom(r.Context())
	a.render(w, r, http.StatusOK, "member", "Verify your age", memberPage{
		Status: a.state.status(acct.ID, a.now()), Kinds: documentKinds, MaxUpload: a.opts.MaxUpload,
		Just: r.URL.Query().Get("uploaded") == "1",
	})
}

// handleUpload streams the image part of a multipart form straight into
// vault.Put. It reads the form with r.MultipartReader and never with
// ParseMultipartForm, which spools large parts to temporary files: nothing
// of the image touches the disk in clear, temporary files included.
func (a *App) handleUpload(w http.ResponseWriter, r *http.Request) {
	acct := accountFrom(r.Context())
	r.Body = http.MaxBytesReader(w, r.Body, a.opts.MaxUpload+multipartOverhead)
	mr, err := r.MultipartReader()
	if err != nil {
		a.fail(w, r, http.StatusBadRequest, "Expected a multipart/form-data upload.")
		return
	}
	kind := documentKinds[0].Value
	var stored *vault.Info
	// undo deletes what this request stored when the request fails later.
	undo := func() {
		if stored != nil {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
			defer cancel()
			_ = a.v.Admin().Delete(ctx, stored.ID, vault.Actor{Principal: acct.ID, Reason: "upload-failed"})
		}
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			undo()
			a.failUpload(w, r, err, true)
			return
		}
		switch p.FormName() {
		case "kind":
			v, err := io.ReadAll(io.LimitReader(p, 65))
			if err != nil {
				undo()
				a.failUpload(w, r, err, true)
				return
			}
			if kindLabel(string(v)) == string(v) {
				undo()
				a.fail(w, r, http.StatusBadRequest, "Unknown document kind.")
				return
			}
			kind = string(v)
		case "document":
			if stored != nil {
				undo()
				a.fail(w, r, http.StatusBadRequest, "One document per upload.")
				return
			}
			ct, _, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
			if err != nil || !uploadTypes[ct] {
				a.fail(w, r, http.StatusUnsupportedMediaType, "Please upload a JPEG, PNG or WebP photo of your document.")
				return
			}
			// The part streams into Put: encrypted as it arrives, checked
			// against its declared type by its magic bytes, never whole in
			// memory, never on disk in clear.
			info, err := a.v.Put(r.Context(), vault.Document{Body: p, Size: -1, ContentType: ct, Kind: kind, Subject: acct.ID})
			if err != nil {
				a.failUpload(w, r, err, false)
				return
			}
			stored = &info
		default:
			// Unknown fields are read and dropped (bounded by MaxBytesReader).
			if _, err := io.Copy(io.Discard, p); err != nil {
				undo()
				a.failUpload(w, r, err, true)
				return
			}
		}
	}
	if stored == nil {
		a.fail(w, r, http.StatusBadRequest, "No document in the upload.")
		return
	}
	replaced, err := a.state.submit(submission{ID: stored.ID, Member: acct.ID, Kind: stored.Kind, Submitted: stored.Created, Expires: stored.Expires})
	if err != nil {
		undo()
		a.logf("upload: saving state: %v", err)
		a.fail(w, r, http.StatusInternalServerError, "Could not record the upload.")
		return
	}
	if replaced != nil {
		// The member uploaded again before a review: the older image goes now.
		if err := a.v.Admin().Delete(r.Context(), replaced.ID, vault.Actor{Principal: acct.ID, Reason: "replaced-by-new-upload"}); err != nil && !errors.Is(err, vault.ErrNotFound) {
			a.logf("upload: deleting replaced document: %v", err)
		}
	}
	http.Redirect(w, r, "/member?uploaded=1", http.StatusSeeOther)
}

// failUpload maps an upload error to its page: 413 too large, 415 not an
// accepted image, 400 for a truncated or malformed form (formErr: the error
// came from parsing the form, so it is the client's), 500 otherwise.
func (a *App) failUpload(w http.ResponseWriter, r *http.Request, err error, formErr bool) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || errors.Is(err, vault.ErrTooLarge):
		a.fail(w, r, http.StatusRequestEntityTooLarge, "The image is too large: at most "+byteSize(a.opts.MaxUpload)+".")
	case errors.Is(err, vault.ErrUnsupportedContent):
		a.fail(w, r, http.StatusUnsupportedMediaType, "That file is not a JPEG, PNG or WebP image, or not the type it claims to be.")
	case formErr || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, vault.ErrTruncated) || errors.Is(err, vault.ErrInvalidArgument):
		a.fail(w, r, http.StatusBadRequest, "The upload was cut short or malformed; nothing was kept. Please try again.")
	default:
		a.logf("upload: %v", err) // vault errors carry no image bytes, token or subject
		a.fail(w, r, http.StatusInternalServerError, "The upload could not be stored; nothing was kept.")
	}
}

// byteSize formats n bytes for people.
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	case n >= 1<<10:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}
