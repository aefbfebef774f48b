// SPDX-License-Identifier: MIT
//
// strayguard's programs: the quiet period of package strayfilter, at the
// server's network interface (tcx egress and ingress).
//
// Egress (server to client) is where state is made, and the only place: a
// datagram of the server's that carries a closing alert (what
// record.CarriesClosingAlert finds) puts the client's address and port into
// the quiet map until now + quiet_ns; a ServerHello that is not a
// HelloRetryRequest takes it out, because the server has accepted that
// client's new handshake. Ingress (client to server) only reads the map: a
// quiet client's datagram passes if it is not DTLS or if its first record is
// an epoch-0 ClientHello (record.Record.OpensAssociation), and is dropped and
// counted by record.Record.Reason otherwise. Nothing an incoming datagram
// says creates, extends or ends a quiet period, so forged datagrams can
// neither silence a client nor grow the map.
//
// The parsing mirrors package record's byte for byte; the Go tests run both
// on the same datagrams (BPF_PROG_TEST_RUN) and compare.

#include "bpf.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

// Counter indexes. The first NUM_REASONS are record.Reason's, in its order.
enum counter {
	REASON_ALERT,
	REASON_APPLICATION_DATA,
	REASON_HANDSHAKE_EPOCH,
	REASON_NOT_CLIENTHELLO,
	REASON_CHANGE_CIPHER_SPEC,
	REASON_CONNECTION_ID,
	REASON_CIPHERTEXT,
	REASON_ACK,
	REASON_OTHER_CONTENT_TYPE,
	REASON_MALFORMED,
	NUM_REASONS = 13,
	COUNTER_QUIETED = NUM_REASONS, // the server's closing alerts: quiet periods started or restarted
	COUNTER_ENDED,                 // the server's ServerHellos that ended a quiet period
	COUNTER_EXPIRED,               // quiet periods found over and removed
	COUNTER_HELLOS,                // ClientHellos passed from quiet clients
	COUNTER_FOREIGN,               // non-DTLS datagrams passed from quiet clients
	NUM_COUNTERS,
};

// The verdicts classify returns besides a reason.
enum {
	PASS_HELLO = -1,
	PASS_NOT_DTLS = -2,
};

// A quiet client: its address (IPv4 as ::ffff:a.b.c.d), its port and the
// server's port, the ports in network byte order.
struct quiet_key {
	__u8 addr[16];
	__u16 client_port;
	__u16 server_port;
};

struct quiet_value {
	__u64 deadline; // bpf_ktime_get_ns (CLOCK_MONOTONIC) when the quiet period ends
};

// Set when the programs are loaded.
volatile const __u64 quiet_ns = 10000000000ULL;
// Bytes before the network header: 14 on Ethernet and loopback, 0 on
// interfaces that carry bare IP packets (tun, WireGuard).
volatile const __u32 l2_len = 14;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct quiet_key);
	__type(value, struct quiet_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} quiet SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NUM_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

// The guarded server ports, one bit each (word port/64, bit port%64).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} ports SEC(".maps");

static __always_inline void count(__u32 i)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &i);
	if (n)
		*n += 1;
}

static __always_inline int guarded(__u16 port_be)
{
	__u16 port = bpf_htons(port_be);
	__u32 word = port >> 6;
	__u64 *bits = bpf_map_lookup_elem(&ports, &word);
	return bits && (*bits >> (port & 63)) & 1;
}

// A UDP datagram to or from a guarded server port.
struct flow {
	__u32 off; // of the UDP payload
	__u32 len; // of the UDP payload
	struct quiet_key key;
};

// The longest IP and UDP headers parse reads: IPv4 with options.
#define MAX_HEADERS (60 + 8)

// parse finds the UDP datagram of a guarded port in skb: on egress the
// server's port is the source and the client the destination, on ingress
// the other way round (on loopback a datagram passes both). IP fragments
// and IPv6 extension headers are left alone: only a first fragment holds a
// UDP header, and only the whole datagram says what it is. The headers
// are read in place, where the kernel almost always has them; a packet
// that holds them elsewhere has them pulled in first.
static __always_inline int parse(struct __sk_buff *skb, struct flow *f, int egress)
{
	__u32 off = l2_len;
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	if (data + off + MAX_HEADERS > end && skb->len > end - data) {
		__u32 want = off + MAX_HEADERS;
		if (bpf_skb_pull_data(skb, want < skb->len ? want : skb->len))
			return 0;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
	}
	__builtin_memset(&f->key, 0, sizeof(f->key));
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 *ip = data + off;
		if ((void *)(ip + 20) > end)
			return 0;
		__u32 ihl = (ip[0] & 0xf) * 4;
		if (ip[0] >> 4 != 4 || ihl < 20 || ip[9] != IPPROTO_UDP)
			return 0;
		if ((ip[6] & 0x3f) || ip[7]) // more fragments, or an offset
			return 0;
		f->key.addr[10] = 0xff;
		f->key.addr[11] = 0xff;
		__builtin_memcpy(&f->key.addr[12], egress ? &ip[16] : &ip[12], 4);
		off += ihl;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		__u8 *ip6 = data + off;
		if ((void *)(ip6 + 40) > end)
			return 0;
		if (ip6[0] >> 4 != 6 || ip6[6] != IPPROTO_UDP)
			return 0;
		__builtin_memcpy(f->key.addr, egress ? &ip6[24] : &ip6[8], 16);
		off += 40;
	} else {
		return 0;
	}
	__u16 *udp = data + off;
	if ((void *)(udp + 4) > end)
		return 0;
	__u16 server = egress ? udp[0] : udp[1];
	if (!guarded(server))
		return 0;
	__u32 ulen = bpf_htons(udp[2]);
	if (ulen < 8 || off + ulen > skb->len)
		return 0;
	f->key.server_port = server;
	f->key.client_port = egress ? udp[1] : udp[0];
	f->off = off + 8;
	f->len = ulen - 8;
	return 1;
}

static __always_inline __u32 u16be(const __u8 *b) { return (__u32)b[0] << 8 | b[1]; }
static __always_inline __u32 u24be(const __u8 *b) { return (__u32)b[0] << 16 | (__u32)b[1] << 8 | b[2]; }

// classify_unified is record's inspectUnified: a DTLS 1.3 unified header.
static __always_inline int classify_unified(struct __sk_buff *skb, __u32 off, __u32 len, __u8 b0)
{
	__u32 header = 2 + (b0 & 0x08 ? 1 : 0) + (b0 & 0x04 ? 2 : 0);
	if (len < header)
		return REASON_MALFORMED;
	if (b0 & 0x10) // a CID of unknown length hides the length field
		return REASON_CIPHERTEXT;
	__u32 payload = len - header;
	if (b0 & 0x04) {
		__u8 l[2];
		if (bpf_skb_load_bytes(skb, off + header - 2, l, 2))
			return REASON_MALFORMED;
		payload = u16be(l);
	}
	if (header + payload > len || payload < 16 || payload > (1 << 14) + 256)
		return REASON_MALFORMED;
	return REASON_CIPHERTEXT;
}

// classify is record.Inspect's verdict on a datagram from a quiet client:
// PASS_NOT_DTLS, PASS_HELLO (OpensAssociation) or the Reason to drop it for.
static __always_inline int classify(struct __sk_buff *skb, __u32 off, __u32 len)
{
	__u8 h[13];
	if (len == 0 || bpf_skb_load_bytes(skb, off, h, 1))
		return REASON_MALFORMED;
	__u8 b0 = h[0];
	if (b0 < 20 || b0 > 63)
		return PASS_NOT_DTLS;
	if ((b0 & 0xe0) == 0x20)
		return classify_unified(skb, off, len, b0);
	if (len < 13 || bpf_skb_load_bytes(skb, off, h, 13))
		return REASON_MALFORMED;
	if (h[1] != 0xfe)
		return REASON_MALFORMED;
	__u32 epoch = u16be(&h[3]);
	if (b0 == 25) // tls12_cid: its length field sits behind the CID
		return epoch == 0 ? REASON_MALFORMED : REASON_CONNECTION_ID;
	__u32 rlen = u16be(&h[11]);
	if (13 + rlen > len)
		return REASON_MALFORMED;
	switch (b0) {
	case 20:
		return REASON_CHANGE_CIPHER_SPEC;
	case 21:
		return REASON_ALERT;
	case 23:
		return REASON_APPLICATION_DATA;
	case 26: {
		if (epoch != 0)
			return REASON_ACK;
		__u8 n[2];
		if (rlen < 2 || bpf_skb_load_bytes(skb, off + 13, n, 2))
			return REASON_MALFORMED;
		if (u16be(n) != rlen - 2 || (rlen - 2) % 16)
			return REASON_MALFORMED;
		return REASON_ACK;
	}
	case 22: {
		if (epoch != 0)
			return REASON_HANDSHAKE_EPOCH;
		__u8 hs[12];
		if (rlen < 12 || bpf_skb_load_bytes(skb, off + 13, hs, 12))
			return REASON_MALFORMED;
		__u64 frag_off = u24be(&hs[6]), frag_len = u24be(&hs[9]);
		if (frag_len > rlen - 12 || frag_off + frag_len > u24be(&hs[1]))
			return REASON_MALFORMED;
		return hs[0] == 1 ? PASS_HELLO : REASON_NOT_CLIENTHELLO;
	}
	default:
		return REASON_OTHER_CONTENT_TYPE;
	}
}

// server_hello reports whether the server's datagram starts with a
// ServerHello fragment that accepts a handshake: not a HelloRetryRequest,
// which like a HelloVerifyRequest only asks the client to prove its
// address (record.Record.AsksForCookie).
static __always_inline int server_hello(struct __sk_buff *skb, __u32 off, __u32 len)
{
	__u8 h[25];
	if (len < 25 || bpf_skb_load_bytes(skb, off, h, 25))
		return 0;
	if (h[0] != 22 || h[1] != 0xfe || h[3] || h[4] || h[13] != 2)
		return 0;
	__u32 rlen = u16be(&h[11]);
	if (13 + rlen > len || rlen < 12)
		return 0;
	__u64 frag_off = u24be(&h[19]), frag_len = u24be(&h[22]);
	if (frag_len > rlen - 12 || frag_off + frag_len > u24be(&h[14]))
		return 0;
	if (frag_off == 0 && frag_len >= 34) {
		// SHA-256("HelloRetryRequest"), the random of a DTLS 1.3
		// HelloRetryRequest, in big-endian words.
		__u64 random[4];
		if (bpf_skb_load_bytes(skb, off + 27, random, 32))
			return 0;
		if (random[0] == bpf_htonll(0xcf21ad74e59a6111ULL) && random[1] == bpf_htonll(0xbe1d8c021e65b891ULL) &&
		    random[2] == bpf_htonll(0xc2a211167abb8c5eULL) && random[3] == bpf_htonll(0x079e09e2c8a8339cULL))
			return 0;
	}
	return 1;
}

struct walk {
	struct __sk_buff *skb;
	__u32 off, end;
	int found;
};

// walk_record is one step of record's walk for CarriesClosingAlert: it
// stops at a record whose length it cannot know (a unified header, a
// foreign byte, tls12_cid) or that runs past the datagram.
static long walk_record(__u32 i, void *data)
{
	struct walk *w = data;
	__u8 h[15];
	if (w->off + 13 > w->end || bpf_skb_load_bytes(w->skb, w->off, h, 13))
		return 1;
	if (h[0] < 20 || h[0] >= 32 || h[1] != 0xfe || h[0] == 25)
		return 1;
	__u32 n = 13 + u16be(&h[11]);
	if (w->off + n > w->end)
		return 1;
	if (h[0] == 21) {
		if (h[3] || h[4]) { // encrypted: every alert at epoch ≥ 1 is taken as closing
			w->found = 1;
			return 1;
		}
		// In the clear: a fatal alert or a close_notify.
		if (n >= 15 && !bpf_skb_load_bytes(w->skb, w->off + 13, &h[13], 2) && (h[13] == 2 || h[14] == 0)) {
			w->found = 1;
			return 1;
		}
	}
	w->off += n;
	return 0;
}

static __always_inline int closing_alert(struct __sk_buff *skb, __u32 off, __u32 len)
{
	struct walk w = {.skb = skb, .off = off, .end = off + len};
	// The most records a UDP datagram can hold: 13-byte headers, no bodies.
	bpf_loop(65535 / 13 + 1, walk_record, &w, 0);
	return w.found;
}

SEC("tc")
int stray_egress(struct __sk_buff *skb)
{
	struct flow f;
	if (!parse(skb, &f, 1))
		return TCX_NEXT;
	if (closing_alert(skb, f.off, f.len)) {
		struct quiet_value v = {.deadline = bpf_ktime_get_ns() + quiet_ns};
		bpf_map_update_elem(&quiet, &f.key, &v, BPF_ANY);
		count(COUNTER_QUIETED);
	} else if (server_hello(skb, f.off, f.len)) {
		if (bpf_map_delete_elem(&quiet, &f.key) == 0)
			count(COUNTER_ENDED);
	}
	return TCX_NEXT; // the server's datagrams always go out
}

SEC("tc")
int stray_ingress(struct __sk_buff *skb)
{
	struct flow f;
	if (!parse(skb, &f, 0))
		return TCX_NEXT;
	struct quiet_value *q = bpf_map_lookup_elem(&quiet, &f.key);
	if (!q)
		return TCX_NEXT;
	if (bpf_ktime_get_ns() >= q->deadline) {
		// Racing a new closing alert of the server's, this may remove a
		// fresh entry: that loses filtering, never a datagram.
		bpf_map_delete_elem(&quiet, &f.key);
		count(COUNTER_EXPIRED);
		return TCX_NEXT;
	}
	int verdict = classify(skb, f.off, f.len);
	if (verdict == PASS_NOT_DTLS) {
		count(COUNTER_FOREIGN);
		return TCX_NEXT;
	}
	if (verdict == PASS_HELLO) {
		count(COUNTER_HELLOS);
		return TCX_NEXT;
	}
	count(verdict);
	return TCX_DROP;
}
