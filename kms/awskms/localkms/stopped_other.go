//go:build !linux

package localkms

// waitStopped cannot look here; kill's signal is taken as delivered.
func waitStopped(int, bool) error { return nil }
