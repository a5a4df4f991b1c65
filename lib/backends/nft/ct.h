/*
 * fwx - conntrack events for the "nft" backend (kernel mode): NEW and DESTROY events of the
 * kernel's connection tracking, read on the loop and filtered by the kernel on fwx's ct mark,
 * and the deletion of one entry (IFWXConnection::Kill of a kernel-mode connection).
 *
 * Built on libnetfilter_conntrack (requests, the socket filter) and libmnl (sockets); events are
 * parsed here (fwx__ct_parse).
 * Conntrack tables and their sysctls are per network namespace: everything here concerns the
 * network namespace of the thread that called fwx__ct_open (both sockets are made there).
 * Internal; not installed. No dependency on nft.c. [loop-thread] unless said otherwise.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_NFT_CT_H
#define FWX_NFT_CT_H

#include <fwx/fwx.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "util/util.h"

typedef struct fwx__ct fwx__ct;

/* One conntrack entry, original direction. The addresses are compact (fwx__sa, 28 bytes each,
   not sockaddr_storage's 128): one is filled per event and one is copied into every flow the
   backend follows, tens of thousands at once (issue 13). Read them as &f->src.sa. */
typedef struct fwx__ct_flow {
    int32_t protocol;                  /* FWX_PROTOCOL_TCP / _UDP */
    fwx__sa src, dst;                  /* as the client sent it (before DNAT) */
    fwx__sa reply_src;                 /* where the reply comes from (after DNAT: the real target) */
    uint32_t mark;                     /* ct mark (0 when the kernel sent none) */
    uint64_t bytes_orig, bytes_reply;  /* when accounting is on (net.netfilter.nf_conntrack_acct) */
    uint8_t tcp_state;                 /* TCP: the conntrack state in the message, 0 if none */
} fwx__ct_flow;

/* NEW: a new entry. DESTROY: the entry is gone (with its final counters). END: a TCP entry
   reached TIME_WAIT or CLOSE (an update event): the connection is over although the entry
   lingers (120 s of TIME_WAIT by default); no counters (fwx__ct_get_counted reads them). */
enum { FWX__CT_NEW = 1, FWX__CT_DESTROY = 2, FWX__CT_END = 3 };

/* f is borrowed for the call. The callback may call fwx__ct_kill, fwx__ct_set_mark_filter and
   fwx__ct_close (no further callbacks follow a close). */
typedef void (*fwx__ct_cb)(void *arg, int event /* FWX__CT_NEW / _DESTROY / _END */, const fwx__ct_flow *f);

/* Subscribes to conntrack NEW and DESTROY events of the calling thread's network namespace, on
   the loop (uv_poll on the netlink socket; never blocks the loop; a full socket buffer (ENOBUFS)
   is logged and counted, never fatal). Turns net.netfilter.nf_conntrack_acct (byte counts) and
   nf_conntrack_events on in this namespace when they are off; fwx__ct_close turns them off
   again unless another fwx instance (any process) still uses this namespace's (a count in
   files under /run/fwx/conntrack, ct.c "settings"; said in the log). Only TCP and UDP entries
   are reported.
   @return FWX_S_OK; FWX_E_NOT_SUPPORTED (no ctnetlink, or events cannot be joined: no
   CAP_NET_ADMIN, or conntrack events not built in); FWX_E_OUTOFMEMORY; FWX_E_INVALIDARG. */
fwx_result fwx__ct_open(uv_loop_t *loop, fwx__ct_cb cb, void *arg, fwx__ct **out);

/* Stops the events at once (no callback after this returns), restores the namespace's
   settings if this was their last fwx user (one log line says what was restored or left on,
   and why), and frees in the close callback. NULL is fine. */
void fwx__ct_close(fwx__ct *ct);

/* Deletes the conntrack entry of this flow (IFWXConnection::Kill in kernel mode): found by its
   original tuple (protocol, src, dst). The kernel answers within the call (no wait); the
   DESTROY event follows on the loop like any other.
   @return FWX_S_OK; FWX_E_NOT_FOUND (no such entry, or already gone); FWX_E_INVALIDARG
   (families differ, not TCP/UDP, no port); FWX_E_FAIL (any other kernel error, logged). */
fwx_result fwx__ct_kill(fwx__ct *ct, const fwx__ct_flow *f);
/* The same, and the entry's byte counters at its end (original and reply direction) in
   *bytes_orig / *bytes_reply when the kernel reports them: the request asks for an echo
   (NLM_F_ECHO), so the DESTROY event comes back on the request socket before the ack. Both
   are 0 if not reported (conntrack accounting off). */
fwx_result fwx__ct_kill_counted(fwx__ct *ct, const fwx__ct_flow *f, uint64_t *bytes_orig, uint64_t *bytes_reply);
/* Also follow update events: a TCP entry's move to TIME_WAIT or CLOSE is reported as
   FWX__CT_END. Off at open (they cost a user-space read and parse per TCP state change).
   @return FWX_S_OK; FWX_E_NOT_SUPPORTED. */
fwx_result fwx__ct_follow_updates(fwx__ct *ct);
/* The entry's byte counters now (IPCTNL_MSG_CT_GET), the entry left as it is.
   @return FWX_S_OK; FWX_E_NOT_FOUND; FWX_E_INVALIDARG; FWX_E_FAIL. */
fwx_result fwx__ct_get_counted(fwx__ct *ct, const fwx__ct_flow *f, uint64_t *bytes_orig, uint64_t *bytes_reply);

/* The entry whose reply tuple is reply_src -> reply_dst (IPCTNL_MSG_CT_GET by CTA_TUPLE_REPLY),
   in *out with its original tuple: for a datagram REDIRECTed to a local socket (reply_src =
   that socket's address, reply_dst = the sender), out->dst is where the client sent it, which
   a UDP socket cannot read back (SO_ORIGINAL_DST is TCP only).
   @return FWX_S_OK; FWX_E_NOT_FOUND; FWX_E_INVALIDARG; FWX_E_POINTER; FWX_E_FAIL. */
fwx_result fwx__ct_lookup_reply(fwx__ct *ct, int32_t protocol, const struct sockaddr *reply_src,
                                const struct sockaddr *reply_dst, fwx__ct_flow *out);

/* Filter: only entries with (mark & mask) == value are reported (the nft backend marks what it
   grants); 0/0 reports all. The filter runs in the kernel (a socket filter on the event socket,
   nfct_filter_attach): events of other flows never reach the process (stats.events does not
   count them). The same test is made here too.
   @return FWX_S_OK (filtered in the kernel, or 0/0: no filter); FWX_S_FALSE (the kernel refused
   the socket filter: filtered here only, logged; stats.kernel_filter 0); FWX_E_OUTOFMEMORY;
   FWX_E_FAIL (0/0: the kernel's filter could not be removed); FWX_E_INVALIDARG. */
fwx_result fwx__ct_set_mark_filter(fwx__ct *ct, uint32_t value, uint32_t mask);

/* Where lines go (ENOBUFS, kill failures, accounting not turned on). Without it, nowhere. */
void fwx__ct_set_log(fwx__ct *ct, fwx_log_fn log, void *arg);

/* The event socket's receive buffer in bytes (default 4 MiB, forced when root). Tests shrink it
   to provoke ENOBUFS; a busy gateway may want more. */
void fwx__ct_set_rcvbuf(fwx__ct *ct, int bytes);

/* Paced reading (ct.c, CT_PACE_MS), on by default: while events keep coming they are read every
   CT_PACE_MS (4 ms) instead of as each arrives, which spares the forwarding CPU a wake-up of fwx per
   event. Off, each event is read as it arrives. The caller turns it off while the order of
   events against its own changes matters: a late NEW event of a flow a one-shot permission let
   through would be matched against the permissions as they are when it is read, and a one-shot
   permission of the same key granted meanwhile would be taken for its own (nft.c). Turning it
   off reads what is queued on the next loop turn. */
void fwx__ct_set_paced(fwx__ct *ct, bool on);

/* Sweep: every interval_ms (default FWX__CT_SWEEP_DEFAULT_MS; 0 = never) a ctnetlink dump that
   matches nothing makes the kernel remove the entries whose timeout has run out, so their
   DESTROY comes on time (the kernel's own garbage collector may wait up to 60 s). Costs one walk
   of this namespace's conntrack table in the kernel per interval, so it is made only while a
   reported flow has had its NEW but not its DESTROY (or after events were lost), and a big
   table stretches the interval: the wait after a walk of W microseconds (of the calling
   thread's CPU time, so time spent waiting for a CPU does not count) is at least W
   milliseconds (at most a thousandth of a CPU), and at most 60 s (stats: sweep_walk_us,
   sweep_interval_ms). */
#define FWX__CT_SWEEP_DEFAULT_MS 2000
void fwx__ct_set_sweep(fwx__ct *ct, uint64_t interval_ms);

typedef struct fwx__ct_stats {
    uint64_t events;     /* messages read from the event socket: what the kernel's filter let through */
    uint64_t reported;   /* callbacks made */
    uint64_t overruns;   /* ENOBUFS: the socket buffer was full, events were lost */
    uint64_t malformed;  /* messages the parser refused */
    uint64_t sweeps;     /* reaping dumps sent (only while a reported flow is open) */
    uint64_t sweep_walk_us;     /* the last one's walk of the table: CPU time of the thread, in us */
    uint64_t sweep_interval_ms; /* the wait before the next one is considered; 0: never */
    uint64_t paced_reads; /* reads made CT_PACE_MS after a wake-up that found events (ct.c) */
    int paced;           /* 1: reading is paced (fwx__ct_set_paced), 0: each event read as it comes */
    int accounting;      /* 1: nf_conntrack_acct is on in this namespace; 0: off (no byte counts) */
    int switched;        /* which namespace-wide settings open switched on: FWX__CT_SWITCHED_* */
    int kernel_filter;   /* 1: the mark filter runs in the kernel (fwx__ct_set_mark_filter) */
} fwx__ct_stats;
#define FWX__CT_SWITCHED_ACCT 1   /* nf_conntrack_acct was 0 */
#define FWX__CT_SWITCHED_EVENTS 2 /* nf_conntrack_events was 0 */
#define FWX__CT_SWITCHED_UNCOUNTED 4 /* no holder could be registered (/run/fwx not writable): left on at close */
void fwx__ct_get_stats(const fwx__ct *ct, fwx__ct_stats *out);

/* The parser, exposed for tests and fuzzing: one netlink message (header included) of len
   bytes, read in one pass without allocating. Returns FWX__CT_NEW / FWX__CT_DESTROY /
   FWX__CT_END with *f filled; 0 for a well-formed message that is not reported (another
   subsystem or message type, not TCP/UDP; an entry update of no interest, e.g. a GET's answer,
   which leaves *f filled: f->protocol != 0); -1 for a malformed one (any length that does not fit, attributes that do not fill
   their container exactly, an attribute fwx reads of the wrong size, a missing tuple or port,
   addresses of another family than the header's). Attributes fwx does not read are skipped by
   their length. Never reads outside [msg, msg+len). The message must be 4-byte aligned (as
   every netlink buffer is). */
int fwx__ct_parse(const void *msg, size_t len, fwx__ct_flow *f);

#endif /* FWX_NFT_CT_H */
