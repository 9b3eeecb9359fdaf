package vault

import (
	"bytes"
	"mime"
	"strings"
)

// sniffLen is how many leading bytes sniff needs.
const sniffLen = 32

// Accepted content types: the formats identity documents arrive in.
const (
	TypeJPEG = "image/jpeg"
	TypePNG  = "image/png"
	TypeWebP = "image/webp"
	TypeHEIC = "image/heic"
	TypeHEIF = "image/heif"
	TypePDF  = "application/pdf"
)

// allowedTypes is the allow-list the Handler serves; nothing else is ever
// stored, so nothing else can be served.
var allowedTypes = map[string]bool{TypeJPEG: true, TypePNG: true, TypeWebP: true, TypeHEIC: true, TypeHEIF: true, TypePDF: true}

// sniff returns the content type of head by its magic bytes, or "".
func sniff(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte{0xFF, 0xD8, 0xFF}):
		return TypeJPEG
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return TypePNG
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return TypeWebP
	case bytes.HasPrefix(head, []byte("%PDF-")):
		return TypePDF
	case len(head) >= 12 && string(head[4:8]) == "ftyp":
		// ISO BMFF: the major brand names the HEIF flavour.
		switch string(head[8:12]) {
		case "heic", "heix", "hevc", "hevx", "heim", "heis", "hevm", "hevs":
			return TypeHEIC
		case "mif1", "msf1":
			return TypeHEIF
		}
	}
	return ""
}

// normalizeType canonicalises a declared content type ("image/JPG;
// charset=x" → "image/jpeg"); "" stays "".
func normalizeType(declared string) string {
	if declared == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(declared)
	if err != nil {
		return "invalid"
	}
	mt = strings.ToLower(mt)
	switch mt {
	case "image/jpg", "image/pjpeg":
		return TypeJPEG
	case "image/heic-sequence":
		return TypeHEIC
	case "image/heif-sequence":
		return TypeHEIF
	}
	return mt
}

// typeMatches reports whether the sniffed type satisfies the declared one.
// HEIC is a HEIF brand, so a declared image/heif accepts both.
func typeMatches(declared, sniffed string) bool {
	return declared == "" || declared == sniffed || declared == TypeHEIF && sniffed == TypeHEIC
}
