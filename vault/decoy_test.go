package vault

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image/jpeg"
	"image/png"
	"regexp"
	"strconv"
	"testing"
)

// TestDecoyBodies: every canary body is a valid file of its content type
// (what the vault sniffs, what a decoder or a structural reader accepts),
// of the size asked for, from tiny to several MiB. Checked outside the
// tests once with real tools too: qpdf --check, webpinfo and dwebp (which
// decodes the card), heif-info (which reads the container; the coded
// image is noise).
func TestDecoyBodies(t *testing.T) {
	for _, ct := range []string{TypeJPEG, TypePNG, TypePDF, TypeWebP, TypeHEIC, TypeHEIF} {
		for _, size := range []int{900, 4 << 10, 100 << 10, 3 << 20} {
			t.Run(fmt.Sprintf("%s/%d", ct, size), func(t *testing.T) {
				b := decoyBody(ct, size)
				if got := sniff(b[:min(len(b), sniffLen)]); got != ct {
					t.Fatalf("sniffed as %q", got)
				}
				if d := len(b) - size; d < -3 || d > 3 {
					t.Fatalf("%d bytes, want %d", len(b), size)
				}
				switch ct {
				case TypeJPEG:
					if _, err := jpeg.Decode(bytes.NewReader(b)); err != nil {
						t.Fatal(err)
					}
				case TypePNG:
					if _, err := png.Decode(bytes.NewReader(b)); err != nil {
						t.Fatal(err)
					}
				case TypePDF:
					checkPDF(t, b)
				case TypeWebP:
					checkWebP(t, b)
				default:
					checkHEIF(t, b)
				}
			})
		}
	}
}

// checkPDF: every cross-reference entry points at its object, startxref at
// the table, and every stream's /Length is its length.
func checkPDF(t *testing.T, b []byte) {
	t.Helper()
	m := regexp.MustCompile(`startxref\n(\d+)\n%%EOF\n$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no startxref at the end")
	}
	x, _ := strconv.Atoi(string(m[1]))
	if !bytes.HasPrefix(b[x:], []byte("xref\n0 ")) {
		t.Fatalf("startxref %d does not point at the table", x)
	}
	entries := regexp.MustCompile(`(\d{10}) 00000 n \n`).FindAllSubmatch(b[x:], -1)
	if len(entries) != 5 {
		t.Fatalf("%d objects in the table", len(entries))
	}
	for i, e := range entries {
		off, _ := strconv.Atoi(string(e[1]))
		if !bytes.HasPrefix(b[off:], fmt.Appendf(nil, "%d 0 obj\n", i+1)) {
			t.Fatalf("object %d is not at %d", i+1, off)
		}
	}
	for _, s := range regexp.MustCompile(`/Length (\d+) >>\nstream\n`).FindAllSubmatchIndex(b, -1) {
		n, _ := strconv.Atoi(string(b[s[2]:s[3]]))
		if !bytes.HasPrefix(b[s[1]+n:], []byte("\nendstream")) && !bytes.HasPrefix(b[s[1]+n:], []byte("endstream")) {
			t.Fatalf("a stream is not %d bytes long", n)
		}
	}
}

// checkWebP walks the RIFF chunks: sizes add up, VP8X comes first and
// names the VP8L image's dimensions.
func checkWebP(t *testing.T, b []byte) {
	t.Helper()
	if int(binary.LittleEndian.Uint32(b[4:])) != len(b)-8 {
		t.Fatal("RIFF size")
	}
	var fourccs []string
	for off := 12; off < len(b); {
		if off+8 > len(b) {
			t.Fatalf("chunk header past the end at %d", off)
		}
		fcc, n := string(b[off:off+4]), int(binary.LittleEndian.Uint32(b[off+4:]))
		data := b[off+8 : off+8+n]
		switch fcc {
		case "VP8X":
			w := int(data[4]) | int(data[5])<<8 | int(data[6])<<16
			h := int(data[7]) | int(data[8])<<8 | int(data[9])<<16
			if w+1 != 856 || h+1 != 540 {
				t.Fatalf("canvas %dx%d", w+1, h+1)
			}
		case "VP8L":
			v := binary.LittleEndian.Uint32(data[1:])
			if data[0] != 0x2f || v&0x3fff != 855 || v>>14&0x3fff != 539 || v>>29 != 0 {
				t.Fatalf("VP8L header %x", data[:5])
			}
		}
		fourccs = append(fourccs, fcc)
		off += 8 + n + n%2
	}
	if len(fourccs) < 2 || fourccs[0] != "VP8X" || fourccs[1] != "VP8L" {
		t.Fatalf("chunks %v", fourccs)
	}
}

// checkHEIF walks the top-level boxes (ftyp, meta, mdat) and checks that
// the item's extent (iloc) is the mdat payload.
func checkHEIF(t *testing.T, b []byte) {
	t.Helper()
	boxes := map[string][2]int{}
	var order []string
	for off := 0; off < len(b); {
		n := int(binary.BigEndian.Uint32(b[off:]))
		if n < 8 || off+n > len(b) {
			t.Fatalf("box at %d of size %d", off, n)
		}
		typ := string(b[off+4 : off+8])
		boxes[typ] = [2]int{off, n}
		order = append(order, typ)
		off += n
	}
	if fmt.Sprint(order) != "[ftyp meta mdat]" {
		t.Fatalf("boxes %v", order)
	}
	meta := b[boxes["meta"][0] : boxes["meta"][0]+boxes["meta"][1]]
	i := bytes.Index(meta, []byte("iloc"))
	if i < 0 {
		t.Fatal("no iloc")
	}
	iloc := meta[i+4+4:] // after the type and version/flags
	off := int(binary.BigEndian.Uint32(iloc[10:]))
	n := int(binary.BigEndian.Uint32(iloc[14:]))
	mdat := boxes["mdat"]
	if off != mdat[0]+8 || n != mdat[1]-8 {
		t.Fatalf("item extent %d+%d, mdat payload %d+%d", off, n, mdat[0]+8, mdat[1]-8)
	}
	for _, want := range []string{"hdlr", "pict", "pitm", "iinf", "infe", "hvc1", "iprp", "ipco", "hvcC", "ispe", "ipma"} {
		if !bytes.Contains(meta, []byte(want)) {
			t.Fatalf("no %s in meta", want)
		}
	}
}
