package envelope

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"
)

// The write path (Seal, then Encrypt the payload; store the payload first and
// the record last) and the read path (Open, then Decrypt).
func Example() {
	ctx := context.Background()
	kek := newTestKEK("example:kek", make([]byte, 32)) // a kms.KEK in real use
	md := Metadata{
		VaultID:     [16]byte{1},
		ObjectID:    [16]byte{2},
		Kind:        "drivers-license",
		ContentType: "image/jpeg",
		Size:        5,
		Created:     time.Date(2021, 4, 20, 0, 0, 0, 0, time.UTC),
		Expires:     time.Date(2021, 4, 23, 0, 0, 0, 0, time.UTC),
	}
	record, k, err := Seal(ctx, kek, md)
	if err != nil {
		panic(err)
	}
	var payload bytes.Buffer
	w, _ := k.Encrypt(&payload)
	io.WriteString(w, "image")
	if err := w.Close(); err != nil {
		panic(err)
	}
	k.Destroy()
	fmt.Println(int64(payload.Len()) == PayloadSize(md.Size))

	got, k, err := Open(ctx, kek, md.VaultID, md.ObjectID, record)
	if err != nil {
		panic(err)
	}
	defer k.Destroy()
	r, err := k.Decrypt(&payload)
	if err != nil {
		panic(err)
	}
	img, err := io.ReadAll(r)
	fmt.Println(got.Kind, string(img), err, k)
	// Output:
	// true
	// drivers-license image <nil> envelope.Key{REDACTED}
}
