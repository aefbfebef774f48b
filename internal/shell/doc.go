// Package shell is what the two shells around the association machine
// (package assoc) share: adapters/demux, for a stack in the same process,
// and adapters/relay, in front of one. A Shell holds the lock that
// serialises events into the machine, its clock, the timer that works off
// its timeouts when no datagram comes, and the hand-off of the
// associations it ended: each to the Handler under the lock, then, the
// lock released, their I/O to be let go.
package shell
