package vault

// Admin holds the administrative operations of a Vault: legal holds,
// erasure, sweeps, key rotation and migration, unfreezing, subject access.
// They are the operator's and the compliance team's, not the everyday
// path (Put, Grant, Redeem, Handler, Decide), and each records its Actor in
// the audit log. Get one with Vault.Admin; it is as safe for concurrent
// use as the Vault.
type Admin struct{ v *Vault }

// Admin returns v's administrative operations.
func (v *Vault) Admin() Admin { return Admin{v} }

// checkActor refuses a call that records its actor, op, after Close
// (ErrClosed) or when by is not a valid Actor.
func (v *Vault) checkActor(op string, by Actor) error {
	if v.isClosed() {
		return ErrClosed
	}
	return by.check(op)
}
