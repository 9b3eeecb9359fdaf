package vault

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	stdimage "image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	mrand "math/rand/v2"
	"sync"
)

// decoyBody returns a canary's plaintext: a valid file of content type ct
// (one of the accepted types) of about size bytes, never shorter than the
// smallest such file this code writes. JPEG and PNG are drawn ID cards
// (decoders show a card); PDF is a one-page document drawing one; WebP is
// a lossless single-colour card in an extended-format container; HEIC is
// an ISO BMFF container (ftyp, meta with one hvc1 item, mdat) whose coded
// data is noise, as no standard library can encode HEVC. Each is padded to
// size with random bytes where the format lets a reader skip them (a JPEG
// comment, a private PNG chunk, an unreferenced PDF stream, an unknown
// WebP chunk, the HEIC media data), so the length follows the real
// documents' lengths, which the store shows, while the padding stays
// behind encryption.
func decoyBody(ct string, size int) []byte {
	switch ct {
	case TypePNG:
		return decoyPNG(size)
	case TypePDF:
		return decoyPDF(size)
	case TypeWebP:
		return decoyWebP(size)
	case TypeHEIC, TypeHEIF:
		return decoyHEIF(ct, size)
	default:
		return decoyJPEG(size)
	}
}

// card draws a plausible ID card of w×h pixels.
func card(w, h int, r *mrand.Rand) *stdimage.RGBA {
	img := stdimage.NewRGBA(stdimage.Rect(0, 0, w, h))
	sx, sy := float64(w)/856, float64(h)/540
	fill := func(x0, y0, x1, y1 int, c color.RGBA) {
		rect := stdimage.Rect(int(float64(x0)*sx), int(float64(y0)*sy), int(float64(x1)*sx), int(float64(y1)*sy))
		draw.Draw(img, rect, &stdimage.Uniform{c}, stdimage.Point{}, draw.Src)
	}
	tint := func(base uint8) uint8 { return uint8(math.Min(255, float64(base)+float64(r.IntN(40)))) }
	fill(0, 0, 856, 540, color.RGBA{tint(210), tint(215), tint(200), 255})
	fill(0, 0, 856, 80+r.IntN(30), color.RGBA{tint(20), tint(70), tint(140), 255})
	fill(40, 130, 280, 450, color.RGBA{tint(170), tint(170), tint(180), 255})
	for i := 0; i < 5+r.IntN(3); i++ {
		fill(320, 140+i*50, 420+r.IntN(380), 158+i*50, color.RGBA{tint(40), tint(40), tint(50), 255})
	}
	return img
}

func newRand() *mrand.Rand { return mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64())) }

// encodeFitting returns an encoded card (format names the encoder) of the
// largest width, 856 pixels halved as needed, that fits in size bytes (or
// the smallest). Encoding a card costs milliseconds of CPU, which would
// delay a canary behind its due time, so each width keeps a few encodings
// (drawn with random tints) and reuses them: they differ in their padding,
// and none is ever seen before a canary is redeemed, which raises the alarm.
func encodeFitting(format string, size int, enc func(img stdimage.Image) []byte) []byte {
	var out []byte
	for w := 856; ; w /= 2 {
		out = cachedCard(format, w, enc)
		if len(out) <= size || w < 16 {
			return out
		}
	}
}

var cards struct {
	sync.Mutex
	m map[string][][]byte
}

// cardsPerWidth is how many encodings of each format and width are kept.
const cardsPerWidth = 4

func cachedCard(format string, w int, enc func(img stdimage.Image) []byte) []byte {
	k := fmt.Sprint(format, w)
	cards.Lock()
	if cards.m == nil {
		cards.m = map[string][][]byte{}
	}
	have := cards.m[k]
	cards.Unlock()
	if len(have) == cardsPerWidth {
		return have[mrand.IntN(cardsPerWidth)]
	}
	b := enc(card(w, w*540/856, newRand()))
	cards.Lock()
	if len(cards.m[k]) < cardsPerWidth {
		cards.m[k] = append(cards.m[k], b)
	}
	cards.Unlock()
	return b
}

// decoyJPEG pads the card with JPEG comment segments of random bytes right
// after SOI (decoders skip comments).
func decoyJPEG(size int) []byte {
	out := encodeFitting("jpeg", size, func(img stdimage.Image) []byte {
		var b bytes.Buffer
		jpeg.Encode(&b, img, &jpeg.Options{Quality: 70 + mrand.IntN(25)})
		return b.Bytes()
	})
	pad := size - len(out)
	if pad < 4 {
		return out
	}
	var p bytes.Buffer
	p.Grow(size)
	p.Write(out[:2])
	for pad >= 4 {
		seg := min(pad-4, 65533)
		p.Write([]byte{0xFF, 0xFE})
		binary.Write(&p, binary.BigEndian, uint16(seg+2))
		io.CopyN(&p, rand.Reader, int64(seg))
		pad -= seg + 4
	}
	p.Write(out[2:])
	return p.Bytes()
}

// pngChunk appends one PNG chunk.
func pngChunk(b *bytes.Buffer, typ string, data []byte) {
	binary.Write(b, binary.BigEndian, uint32(len(data)))
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	b.WriteString(typ)
	b.Write(data)
	binary.Write(b, binary.BigEndian, crc.Sum32())
}

// decoyPNG pads the card with private ancillary chunks ("idPd": ancillary,
// private, safe to copy) of random bytes before IEND.
func decoyPNG(size int) []byte {
	out := encodeFitting("png", size, func(img stdimage.Image) []byte {
		var b bytes.Buffer
		png.Encode(&b, img)
		return b.Bytes()
	})
	pad := size - len(out)
	if pad < 12 {
		return out
	}
	const iendLen = 12
	var p bytes.Buffer
	p.Grow(size)
	p.Write(out[:len(out)-iendLen])
	for pad >= 12 {
		n := min(pad-12, 1<<20)
		data := make([]byte, n)
		rand.Read(data)
		pngChunk(&p, "idPd", data)
		pad -= n + 12
	}
	p.Write(out[len(out)-iendLen:])
	return p.Bytes()
}

// decoyPDF writes a one-page PDF 1.4 drawing a card, and an unreferenced
// stream object of random bytes to reach size; the cross-reference table
// points at every object.
func decoyPDF(size int) []byte {
	r := newRand()
	var content bytes.Buffer
	lines := 5 + r.IntN(3)
	widths := make([]int, lines)
	for i := range widths {
		widths[i] = 120 + r.IntN(200)
	}
	fills := [3]float64{0.8 + r.Float64()*0.15, 0.8 + r.Float64()*0.15, 0.75 + r.Float64()*0.15}
	band := 0.5 + r.Float64()*0.2
	writeContent := func(lines int) {
		content.Reset()
		fmt.Fprintf(&content, "q %.2f %.2f %.2f rg 36 400 540 340 re f Q\n", fills[0], fills[1], fills[2])
		fmt.Fprintf(&content, "q 0.1 0.3 %.2f rg 36 690 540 50 re f Q\n", band)
		content.WriteString("q 0.65 0.65 0.7 rg 60 440 140 180 re f Q\n")
		for i := range lines {
			fmt.Fprintf(&content, "q 0.2 0.2 0.25 rg 230 %d %d 10 re f Q\n", 600-i*30, widths[i])
		}
	}
	writeContent(lines)
	build := func(padLen int, pad []byte) []byte {
		var b bytes.Buffer
		b.WriteString("%PDF-1.4\n%\xE2\xE3\xCF\xD3\n")
		var offs []int
		obj := func(body string) {
			offs = append(offs, b.Len())
			fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", len(offs), body)
		}
		obj("<< /Type /Catalog /Pages 2 0 R >>")
		obj("<< /Type /Pages /Kids [3 0 R] /Count 1 >>")
		obj("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << >> >>")
		obj(fmt.Sprintf("<< /Length %d >>\nstream\n%sendstream", content.Len(), content.Bytes()))
		offs = append(offs, b.Len())
		fmt.Fprintf(&b, "%d 0 obj\n<< /Length %d >>\nstream\n", len(offs), padLen)
		b.Write(pad[:padLen])
		b.WriteString("\nendstream\nendobj\n")
		xref := b.Len()
		fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(offs)+1)
		for _, o := range offs {
			fmt.Fprintf(&b, "%010d 00000 n \n", o)
		}
		fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(offs)+1, xref)
		return b.Bytes()
	}
	n := 0
	overhead := len(build(0, nil))
	// A small size leaves room for fewer text lines (the card's lines,
	// 38 or 39 bytes each): draw as many as fit.
	for overhead > size && lines > 1 {
		lines--
		writeContent(lines)
		overhead = len(build(0, nil))
	}
	pad := make([]byte, max(size-overhead, 0)+32)
	rand.Read(pad)
	// The lengths printed in the file change with the padding's length:
	// converge in a few rounds.
	for range 4 {
		out := build(n, pad)
		if d := size - len(out); d != 0 && n+d >= 0 && n+d <= len(pad) {
			n += d
			continue
		}
		return out
	}
	return build(n, pad)
}

// riffChunk appends one RIFF chunk (padded to an even length).
func riffChunk(b *bytes.Buffer, fourcc string, data []byte) {
	b.WriteString(fourcc)
	binary.Write(b, binary.LittleEndian, uint32(len(data)))
	b.Write(data)
	if len(data)%2 == 1 {
		b.WriteByte(0)
	}
}

// vp8lUniform is a VP8L (lossless WebP) bitstream of a w×h image of one
// colour: no transform, no colour cache, and five prefix codes of one
// symbol each, so every pixel takes zero bits.
func vp8lUniform(w, h int, c color.RGBA) []byte {
	var bits uint64
	n := 0
	put := func(v uint64, k int) { bits |= v << n; n += k }
	put(uint64(w-1), 14)
	put(uint64(h-1), 14)
	put(0, 1) // alpha not used
	put(0, 3) // version
	put(0, 1) // no transform
	out := []byte{0x2f}
	flush := func() {
		for n >= 8 {
			out = append(out, byte(bits))
			bits >>= 8
			n -= 8
		}
	}
	flush()
	put(0, 1) // no colour cache
	put(0, 1) // no meta prefix codes
	for _, sym := range []uint8{c.G, c.R, c.B, c.A} {
		put(1, 1) // simple code
		put(0, 1) // one symbol
		put(1, 1) // 8-bit symbol
		put(uint64(sym), 8)
		flush()
	}
	put(1, 1) // distance: simple code,
	put(0, 1) // one symbol,
	put(0, 1) // 1-bit symbol:
	put(0, 1) // 0
	for n > 0 {
		out = append(out, byte(bits))
		bits >>= 8
		n -= 8
	}
	return out
}

// decoyWebP is an extended-format WebP (VP8X, VP8L) of a card-sized single
// colour, padded with an unknown chunk ("idPd"), which readers skip.
func decoyWebP(size int) []byte {
	r := newRand()
	w, h := 856, 540
	vp8x := make([]byte, 10)
	vp8x[4], vp8x[5], vp8x[6] = byte(w-1), byte((w-1)>>8), byte((w-1)>>16)
	vp8x[7], vp8x[8], vp8x[9] = byte(h-1), byte((h-1)>>8), byte((h-1)>>16)
	var body bytes.Buffer
	body.WriteString("WEBP")
	riffChunk(&body, "VP8X", vp8x)
	riffChunk(&body, "VP8L", vp8lUniform(w, h, color.RGBA{uint8(200 + r.IntN(40)), uint8(200 + r.IntN(40)), uint8(190 + r.IntN(40)), 255}))
	if pad := size - 8 - body.Len() - 8; pad >= 0 {
		pad &^= 1 // chunks are even
		data := make([]byte, pad)
		rand.Read(data)
		riffChunk(&body, "idPd", data)
	}
	var out bytes.Buffer
	out.WriteString("RIFF")
	binary.Write(&out, binary.LittleEndian, uint32(body.Len()))
	out.Write(body.Bytes())
	return out.Bytes()
}

// box is an ISO BMFF box; full adds version and flags.
func box(typ string, full bool, payload ...[]byte) []byte {
	var b bytes.Buffer
	n := 8
	if full {
		n += 4
	}
	for _, p := range payload {
		n += len(p)
	}
	binary.Write(&b, binary.BigEndian, uint32(n))
	b.WriteString(typ)
	if full {
		b.Write([]byte{0, 0, 0, 0})
	}
	for _, p := range payload {
		b.Write(p)
	}
	return b.Bytes()
}

func be16(v int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }
func be32(v int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }

// decoyHEIF is a HEIF file with one hvc1 image item (its properties: an
// hvcC configuration and the card's extent) whose data, in mdat, is
// random: a valid container whose coded image is noise.
func decoyHEIF(ct string, size int) []byte {
	brand := "heic"
	if ct == TypeHEIF {
		brand = "mif1"
	}
	ftyp := box("ftyp", false, []byte(brand), be32(0), []byte("mif1heic"))
	hvcC := box("hvcC", false, append([]byte{1, 1, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 90, 0xF0, 0, 0xFC, 0xFD, 0xF8, 0xF8, 0, 0, 0x0F}, 0))
	ispe := box("ispe", true, be32(856), be32(540))
	ipco := box("ipco", false, hvcC, ispe)
	ipma := box("ipma", true, be32(1), be16(1), []byte{2, 0x81, 0x02})
	iprp := box("iprp", false, ipco, ipma)
	hdlr := box("hdlr", true, be32(0), []byte("pict"), make([]byte, 12), []byte{0})
	pitm := box("pitm", true, be16(1))
	infe := box("infe", false, []byte{2, 0, 0, 0}, be16(1), be16(0), []byte("hvc1"), []byte{0})
	iinf := box("iinf", true, be16(1), infe)
	mkIloc := func(off, n int) []byte {
		return box("iloc", true, []byte{0x44, 0x00}, be16(1), be16(1), be16(0), be16(1), be32(off), be32(n))
	}
	meta := func(off, n int) []byte { return box("meta", true, hdlr, pitm, mkIloc(off, n), iinf, iprp) }
	head := len(ftyp) + len(meta(0, 0)) + 8 // + the mdat header
	n := max(size-head, 64)
	data := make([]byte, n)
	rand.Read(data)
	var out bytes.Buffer
	out.Write(ftyp)
	out.Write(meta(head, n))
	out.Write(box("mdat", false, data))
	return out.Bytes()
}
