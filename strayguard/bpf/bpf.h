/* SPDX-License-Identifier: MIT */
/*
 * The few kernel definitions guard.c needs, written out so that the
 * compiled objects depend on nothing but this directory and clang: no
 * libbpf-dev, no linux-libc-dev of one version or another. Every value
 * below is kernel UAPI and cannot change.
 */
#ifndef STRAYGUARD_BPF_H
#define STRAYGUARD_BPF_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;

/* struct __sk_buff, up to the last field read here (data_end). */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
};

enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
};

enum { BPF_ANY = 0 };

/* tcx verdicts (include/uapi/linux/bpf.h, Linux 6.6). */
enum {
	TCX_NEXT = -1,
	TCX_PASS = 0,
	TCX_DROP = 2,
};

/* libbpf's pinning convention, which cilium/ebpf reads. */
enum { LIBBPF_PIN_BY_NAME = 1 };

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_UDP 17

#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define bpf_htons(x) __builtin_bswap16(x)
#define bpf_htonll(x) __builtin_bswap64(x)
#else
#define bpf_htons(x) (x)
#define bpf_htonll(x) (x)
#endif

/* Helpers, by their fixed IDs. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_skb_load_bytes)(const void *skb, __u32 offset, void *to, __u32 len) = (void *)26;
static long (*bpf_skb_pull_data)(void *skb, __u32 len) = (void *)39;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx, __u64 flags) = (void *)181;

#endif
