package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseStoreURL(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	s3 := func(bucket, endpoint string, tls bool, prefix, region string) storeSpec {
		return storeSpec{Kind: kindS3, Bucket: bucket, Endpoint: endpoint, TLS: tls, Prefix: prefix, Region: region}
	}
	file := func(p string) storeSpec { return storeSpec{Kind: kindFile, Path: p} }
	tests := []struct {
		in   string
		want storeSpec // zero: an error is expected
	}{
		// Files.
		{"/var/lib/idvault", file("/var/lib/idvault")},
		{"/var/lib/idvault/", file("/var/lib/idvault")},
		{"/var/lib/../lib/idvault", file("/var/lib/idvault")},
		{"data", file(filepath.Join(wd, "data"))},
		{"./data/x", file(filepath.Join(wd, "data/x"))},
		{"/tmp/a#b c", file("/tmp/a#b c")},
		{"file:///var/lib/idvault", file("/var/lib/idvault")},
		{"file://localhost/var/lib/idvault", file("/var/lib/idvault")},
		{"FILE:///srv/x", file("/srv/x")},
		{"file:///srv/with%20space", file("/srv/with space")},
		{"file://otherhost/var", storeSpec{}},
		{"file://var/lib", storeSpec{}}, // "var" would be a host
		{"file:relative", storeSpec{}},
		{"file:/abs", storeSpec{}},
		{"file:///x?y=1", storeSpec{}},
		{"file:///x#frag", storeSpec{}},
		{"file://", storeSpec{}},
		{"", storeSpec{}},
		{"/a\nb", storeSpec{}},

		// S3.
		{"s3://idv-bucket", s3("idv-bucket", defaultS3Endpoint, true, "", "")},
		{"s3://idv-bucket?endpoint=127.0.0.1:9000&tls=false", s3("idv-bucket", "127.0.0.1:9000", false, "", "")},
		{"s3://idv-bucket?endpoint=minio.internal&tls=true&prefix=vault/a&region=eu-west-1", s3("idv-bucket", "minio.internal", true, "vault/a", "eu-west-1")},
		{"s3://idv-bucket?endpoint=[::1]:9000&tls=0", s3("idv-bucket", "[::1]:9000", false, "", "")},
		{"s3://idv-bucket?prefix=p/", s3("idv-bucket", defaultS3Endpoint, true, "p", "")},
		{"s3://idv-bucket/vault/a", s3("idv-bucket", defaultS3Endpoint, true, "vault/a", "")},
		{"s3://idv-bucket/", s3("idv-bucket", defaultS3Endpoint, true, "", "")},
		{"S3://idv-bucket?endpoint=MinIO:9000", s3("idv-bucket", "minio:9000", true, "", "")},
		{"s3://a.b-c.d?endpoint=host", s3("a.b-c.d", "host", true, "", "")},
		{"s3://user:secret@idv-bucket", storeSpec{}},
		{"s3://user@idv-bucket", storeSpec{}},
		{"s3://idv-bucket?endpoint=http://host:9000", storeSpec{}},
		{"s3://idv-bucket?endpoint=host/path", storeSpec{}},
		{"s3://idv-bucket?endpoint=host:0", storeSpec{}},
		{"s3://idv-bucket?endpoint=host:65536", storeSpec{}},
		{"s3://idv-bucket?endpoint=host:09000", storeSpec{}},
		{"s3://idv-bucket?endpoint=::1", storeSpec{}},
		{"s3://idv-bucket?endpoint=", storeSpec{}},
		{"s3://idv-bucket?tls=maybe", storeSpec{}},
		{"s3://idv-bucket?tls=true&tls=false", storeSpec{}},
		{"s3://idv-bucket?endpont=host", storeSpec{}},
		{"s3://idv-bucket?access_key=x", storeSpec{}},
		{"s3://idv-bucket?region=EU", storeSpec{}},
		{"s3://idv-bucket?prefix=../x", storeSpec{}},
		{"s3://idv-bucket?prefix=/x", storeSpec{}},
		{"s3://idv-bucket?prefix=a//b", storeSpec{}},
		{"s3://idv-bucket/p?prefix=q", storeSpec{}},
		{"s3://idv-bucket#frag", storeSpec{}},
		{"s3://idv-bucket?a=1;b=2", storeSpec{}},
		{"s3://Upper", storeSpec{}},
		{"s3://ab", storeSpec{}},
		{"s3://-bucket", storeSpec{}},
		{"s3://bucket-", storeSpec{}},
		{"s3://a..b", storeSpec{}},
		{"s3://bucket:9000", storeSpec{}},
		{"s3://" + strings.Repeat("a", 64), storeSpec{}},
		{"s3://", storeSpec{}},
		{"s3:bucket", storeSpec{}},
		{"gs://bucket", storeSpec{}},
		{"http://host/x", storeSpec{}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.in), func(t *testing.T) {
			got, err := parseStoreURL(tt.in)
			if tt.want == (storeSpec{}) {
				if err == nil {
					t.Fatalf("want an error, got %+v", got)
				}
				if !errors.Is(err, errStoreURL) {
					t.Fatalf("error %v does not wrap errStoreURL", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			// The canonical form parses back to the same spec.
			again, err := parseStoreURL(got.String())
			if err != nil || again != got {
				t.Fatalf("String() = %q parses to %+v, %v", got.String(), again, err)
			}
		})
	}
}

// TestParseStoreURLNeverEchoesCredentials: an error about a URL that
// carries a secret must not repeat it.
func TestParseStoreURLNeverEchoesCredentials(t *testing.T) {
	const secret = "hunter2-SECRET"
	for i, in := range []string{
		"s3://AKIA:" + secret + "@bucket",
		"s3://bucket?secret=" + secret,
		"s3://bucket?endpoint=" + secret + "/x",
		"s3://b?x=1&" + secret + "=1",
		"gs://" + secret,
		"s3://" + secret + "%zz",
		"file://" + secret + "/x",
	} {
		_, err := parseStoreURL(in)
		if err == nil {
			t.Fatalf("case %d: want an error", i)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("case %d: the error echoes the secret (withheld)", i)
		}
	}
}

func TestS3Credentials(t *testing.T) {
	tests := []struct {
		name        string
		env         map[string]string
		access, sec string
		wantNoCreds bool
	}{
		{"minio root", map[string]string{"MINIO_ROOT_USER": "u", "MINIO_ROOT_PASSWORD": "p"}, "u", "p", false},
		{"minio access", map[string]string{"MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "s"}, "a", "s", false},
		{"aws", map[string]string{"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}, "k", "s", false},
		{"first complete pair wins", map[string]string{
			"MINIO_ROOT_USER": "half", "MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "s", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s2",
		}, "a", "s", false},
		{"root preferred", map[string]string{
			"MINIO_ROOT_USER": "u", "MINIO_ROOT_PASSWORD": "p", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
		}, "u", "p", false},
		{"none", nil, "", "", true},
		{"half pairs only", map[string]string{"MINIO_ROOT_PASSWORD": "p", "AWS_ACCESS_KEY_ID": "k"}, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, s, err := s3Credentials(func(k string) string { return tt.env[k] })
			if tt.wantNoCreds {
				if !errors.Is(err, errNoCredentials) {
					t.Fatalf("want errNoCredentials, got %v", err)
				}
				for _, v := range tt.env {
					if strings.Contains(err.Error(), "="+v) {
						t.Fatalf("error shows a value: %v", err)
					}
				}
				return
			}
			if err != nil || a != tt.access || s != tt.sec {
				t.Fatalf("got (%q, %q, %v), want (%q, %q)", a, s, err, tt.access, tt.sec)
			}
		})
	}
}

func FuzzParseStoreURL(f *testing.F) {
	for _, s := range []string{
		"/var/lib/idvault", "rel/dir", "file:///srv/x", "file://localhost/x", "file:///a%20b",
		"s3://bucket", "s3://idv-b?endpoint=127.0.0.1:9000&tls=false&prefix=p/q&region=us-east-1",
		"s3://bucket/prefix", "s3://u:p@bucket", "s3://b?endpoint=[::1]:1", "s3://b?tls=1&tls=0",
		"gs://x", "s3:x", "", "file://", "s3://bucket?prefix=%2e%2e",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		spec, err := parseStoreURL(in)
		if refused(t, err, errStoreURL) {
			return
		}
		switch spec.Kind {
		case kindFile:
			if !filepath.IsAbs(spec.Path) || filepath.Clean(spec.Path) != spec.Path {
				t.Fatalf("path %q not absolute and clean", spec.Path)
			}
		case kindS3:
			if !validBucket(spec.Bucket) || !validEndpoint(spec.Endpoint) {
				t.Fatalf("invalid bucket or endpoint accepted: %+v", spec)
			}
			// Credentials in the authority are never accepted.
			auth := in[strings.Index(in, "://")+3:]
			if k := strings.IndexAny(auth, "/?"); k >= 0 {
				auth = auth[:k]
			}
			if strings.Contains(auth, "@") {
				t.Fatalf("credentials accepted in %q", in)
			}
		default:
			t.Fatalf("unknown kind %d", spec.Kind)
		}
		again, err := parseStoreURL(spec.String())
		if err != nil || again != spec {
			t.Fatalf("%q: String() = %q parses to %+v, %v; want %+v", in, spec.String(), again, err, spec)
		}
	})
}
