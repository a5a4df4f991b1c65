/*
 * fwx - internal utilities shared by every part of the core. Not installed.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_UTIL_H
#define FWX_UTIL_H

#include <fwx/fwx.h>
#include <fwx/plugin_helpers.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>

/* Get back from an embedded interface to its object (Wine's impl_from_*): the plugins' macro. */
#define fwx__container_of(ptr, type, member) FWX_CONTAINER_OF(ptr, type, member)

#define FWX__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- socket addresses ---------------------------------------------------------------- */

/* Longest text fwx__sa_fmt writes: "[v6%zone]:port" plus NUL. */
#define FWX__SA_STRLEN 64

/* True when sa is AF_INET or AF_INET6 and len covers it. */
bool fwx__sa_valid(const struct sockaddr *sa, uint32_t len);
/* The length of an AF_INET/AF_INET6 address, 0 for anything else. */
uint32_t fwx__sa_len(const struct sockaddr *sa);
/* Copies a valid address into storage, turning ::ffff:a.b.c.d into AF_INET. False if invalid. */
bool fwx__sa_canon(const struct sockaddr *sa, uint32_t len, struct sockaddr_storage *out);
uint16_t fwx__sa_port(const struct sockaddr *sa);
void fwx__sa_set_port(struct sockaddr *sa, uint16_t port);
/* Same family and same IP (ports ignored). Both must be canonical. */
bool fwx__sa_same_ip(const struct sockaddr *a, const struct sockaddr *b);
/* Same IP and port. */
bool fwx__sa_same_endpoint(const struct sockaddr *a, const struct sockaddr *b);
/* Same first `bits` bits of the address (same family required). */
bool fwx__sa_same_prefix(const struct sockaddr *a, const struct sockaddr *b, unsigned bits);
/* Orders IPs of one family: <0, 0, >0. Different families order AF_INET first. */
int fwx__sa_cmp_ip(const struct sockaddr *a, const struct sockaddr *b);
bool fwx__sa_is_unspecified(const struct sockaddr *sa);
bool fwx__sa_is_loopback(const struct sockaddr *sa);
/* 0.0.0.0/8, "this host on this network" (RFC 1122 3.2.1.3): a source only, never a
   destination; Linux connects 0.0.0.0 to the host itself. */
bool fwx__sa_is_this_network(const struct sockaddr *sa);
bool fwx__sa_is_multicast(const struct sockaddr *sa);
/* 255.255.255.255 (a subnet's broadcast is the policy's business). */
bool fwx__sa_is_broadcast(const struct sockaddr *sa);
/*
 * A compact AF_INET/AF_INET6 address (28 bytes, not sockaddr_storage's 128): what the core
 * keeps per session, connection and grant, since it only ever holds those two families (issue
 * 12: five sockaddr_storage fields were 640 of a connection object's 1,000 bytes). Read it as
 * `&x.sa`. Written only through fwx__sa_set (it checks the family, so nothing is cut off) and
 * handed out through fwx__sa_get into the public API's sockaddr_storage fields. All zero (family
 * AF_UNSPEC): no address.
 */
typedef union fwx__sa {
    struct sockaddr sa;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
} fwx__sa;
/* Copies sa (NULL or AF_UNSPEC: none) into out, zero-filled. Any other family than AF_INET,
   AF_INET6 or AF_UNSPEC: out is left all zero and the result false, so that no caller keeps
   a part of an address it did not check. */
bool fwx__sa_set(fwx__sa *out, const struct sockaddr *sa);
/* Copies a into a whole sockaddr_storage, zero-filled past the address. */
void fwx__sa_get(struct sockaddr_storage *out, const fwx__sa *a);
/* "192.0.2.1:80", "[2001:db8::1]:80". */
const char *fwx__sa_fmt(const struct sockaddr *sa, char buf[FWX__SA_STRLEN]);
const char *fwx__sa_fmt_ip(const struct sockaddr *sa, char buf[FWX__SA_STRLEN]);
/*
 * An address (and port) as a fixed run of bytes, for hash-table keys and memcmp: zero-filled,
 * so two keys are equal exactly when the endpoints are. The IPv6 scope id is not part of it.
 */
typedef struct fwx__sa_key {
    uint8_t family;
    uint8_t zero; /* keeps the layout free of padding */
    uint16_t port;
    uint8_t ip[16];
} fwx__sa_key;
/* The key of sa; with_port false leaves the port 0 (a key for the IP alone). */
void fwx__sa_key_of(const struct sockaddr *sa, bool with_port, fwx__sa_key *k);
/* Parses "a.b.c.d", "a.b.c.d:port", "v6", "[v6]", "[v6]:port" strictly. need_port: 1 required,
   0 forbidden, -1 optional. Returns false on anything else. */
bool fwx__sa_parse(const char *text, int need_port, struct sockaddr_storage *out);

/* ---- struct_size: the one rule (include/fwx/common.h, @ref struct_sizes) ------------------ */

/* The size of a struct's first version: through its last field then, without the padding after
   it (a caller built then may give either). */
#define FWX__SIZE_THROUGH(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

/*
 * The first version of every public struct that carries struct_size, in one place. Each
 * struct's doc in include/fwx/ gives the same figure; tests/check_struct_size.c declares these
 * layouts and calls every entry point with them. A struct that grows keeps its line here.
 */
#define FWX__FIRST_FIREWALL_OPTIONS FWX__SIZE_THROUGH(fwx_firewall_options, log_level)
#define FWX__FIRST_FIREWALL_STATS FWX__SIZE_THROUGH(fwx_firewall_stats, plugins)
#define FWX__FIRST_OBJECT_INFO FWX__SIZE_THROUGH(fwx_object_info, kernel_mode)
#define FWX__FIRST_SESSION_PARAMS FWX__SIZE_THROUGH(fwx_session_params, user)
#define FWX__FIRST_CONNECTION_PARAMS FWX__SIZE_THROUGH(fwx_connection_params, flags)
#define FWX__FIRST_FLOW FWX__SIZE_THROUGH(fwx_flow, destination_len)
#define FWX__FIRST_PLUGIN_ENTRY FWX__SIZE_THROUGH(fwx_plugin_entry, create_filter)
#define FWX__FIRST_LOG_RECORD FWX__SIZE_THROUGH(fwx_log_record, n_fields)
#define FWX__FIRST_GRANT FWX__SIZE_THROUGH(fwx_grant, expires_ms)
#define FWX__FIRST_LISTEN_SPEC FWX__SIZE_THROUGH(fwx_listen_spec, protocol_guid)
#define FWX__FIRST_SOCKS_LIMITS FWX__SIZE_THROUGH(fwx_socks_limits, pending)
#define FWX__FIRST_REDIRECT_APP FWX__SIZE_THROUGH(fwx_redirect_app, cgroup_path)
#define FWX__FIRST_REDIRECT_HOP FWX__SIZE_THROUGH(fwx_redirect_hop, target)
#define FWX__FIRST_LOCAL_REDIRECT FWX__SIZE_THROUGH(fwx_local_redirect, handle)
#define FWX__FIRST_POLICY_PROTOCOL_INFO FWX__SIZE_THROUGH(fwx_policy_protocol_info, line)
#define FWX__FIRST_POLICY_RULE_INFO FWX__SIZE_THROUGH(fwx_policy_rule_info, n_protocols)

/* A caller's struct_size is accepted when it lies between the first version and ours. */
static inline bool fwx__struct_size_ok(uint32_t size, size_t first, size_t ours)
{
    return size >= first && size <= ours;
}

/*
 * An input struct: zeroes local (ours bytes), then copies the caller's struct_size bytes of in
 * into it and sets local's struct_size to ours, so that the entry point reads every field of
 * local and the fields the caller did not have are 0 (their documented default). False when the
 * size is not accepted (local is then all zero): the entry point returns FWX_E_INVALIDARG.
 */
bool fwx__struct_in(void *local, size_t ours, const void *in, size_t first);
#define FWX__STRUCT_IN(local, in, first) fwx__struct_in(&(local), sizeof(local), (in), (first))

/*
 * An output struct: the library fills a whole local of its own, then copies it into out up to
 * the caller's struct_size (0: the first size, for callers built against fwx 1.0), never past it,
 * and leaves out's struct_size as the caller set it.
 * False, with nothing written, when the size is not accepted (FWX_E_INVALIDARG).
 */
bool fwx__struct_out(void *out, const void *local, size_t ours, size_t first);
#define FWX__STRUCT_OUT(out, local, first) fwx__struct_out((out), &(local), sizeof(local), (first))

/*
 * An initialiser (fwx_firewall_options_init and the like, called with the caller's sizeof):
 * copies the first size bytes of defaults (ours bytes, a whole struct) into out and sets out's
 * struct_size to size. False, with nothing written, when the size is not accepted.
 */
bool fwx__struct_init(void *out, uint32_t size, const void *defaults, size_t ours, size_t first);
#define FWX__STRUCT_INIT(out, size, defaults, first) fwx__struct_init((out), (size), &(defaults), sizeof(defaults), (first))

/* Refuses a struct whose size the rule does not accept: one line on fw's log (through the
   public fwx_firewall_log, so backends use it too) naming the call, the struct and the sizes
   taken. Returns FWX_E_INVALIDARG. */
fwx_result fwx__struct_refused(fwx_firewall *fw, const char *call, const char *type, uint32_t size, size_t first,
                               size_t ours);
/* ---- results --------------------------------------------------------------------------- */

/* The one mapping from a failed system or libuv call to a result (libuv's codes are negative
   errnos on Linux, so either sign works): the cases a caller can act on get their own codes
   (EADDRINUSE: FWX_E_ADDRINUSE, so the core tries another port; EADDRNOTAVAIL; ECONNREFUSED;
   ENOMEM; EINVAL), anything else is `fallback`, the "it failed" the caller documents
   (FWX_E_BACKEND for a backend's socket, FWX_E_INVALIDARG for a filter's socket call). */
fwx_result fwx__result_from_errno(int err, fwx_result fallback);

/* ---- shared listeners ------------------------------------------------------------------ */

/* Lets the n firewalls of one process (one per event loop, fwx_firewall_options.listen_shared)
   share one listening address. fwx__reuseport, before the bind: SO_REUSEPORT.
   fwx__reuseport_by_source, after the bind (TCP: after listen): a program that sends each
   source address to socket hash(address) % n of the group. The group's sockets are numbered in
   the order they joined, so a host that opens each listener on its loops in loop order gets
   index == loop: one client address reaches one loop on every shared address. 0, or a
   negative errno. */
int fwx__reuseport(int fd);
int fwx__reuseport_by_source(int fd, uint32_t n);

/* ---- a log line a second (logpace.c) ---------------------------------------------------- */

/* For an event a peer can cause at will (a refusal): say the first at once, count the ones
   within FWX__LOGPACE_MS of the last line, and let the next line say how many went unsaid.
   Zero-initialise. Not thread-safe. */
#define FWX__LOGPACE_MS 1000
typedef struct fwx__logpace {
    uint64_t said_ms; /* when the last line was said (the caller's ms, + 1), 0: never */
    uint32_t unsaid;  /* events since then that were not said */
} fwx__logpace;
/* now_ms: any monotonic milliseconds (uv_now). True: say this one, *unsaid is the count of the
   events not said since the last line. False: it was counted; say nothing (*unsaid = 0). */
bool fwx__logpace_say(fwx__logpace *p, uint64_t now_ms, uint32_t *unsaid);

/* ---- a table of object pointers by hash (omap.c) --------------------------------------- */

/* Open addressing, for the hot tables that hold one record per flow (omap.c says why not
   uthash there). The caller hashes and compares: fwx__omap_find asks eq(object, key) only of
   objects stored under the same hash. An object may be stored once; several objects may share
   a hash. Zero-initialise to start; fwx__omap_free to end. Not thread-safe. */
typedef struct fwx__omap_slot {
    uint64_t h;
    void *v; /* NULL: empty */
} fwx__omap_slot;
typedef struct fwx__omap {
    fwx__omap_slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t n;
} fwx__omap;
/* Stores v (not NULL) under h. False: out of memory (the table is unchanged). */
bool fwx__omap_put(fwx__omap *m, uint64_t h, void *v);
/* The object stored under h for which eq(object, key) is true, or NULL. */
void *fwx__omap_find(const fwx__omap *m, uint64_t h, bool (*eq)(const void *v, const void *key), const void *key);
/* Removes v, stored under h. False: it is not in the table. */
bool fwx__omap_del(fwx__omap *m, uint64_t h, const void *v);
/* Some object of the table, or NULL when it is empty, scanning from *cursor (start it at 0 and
   keep it between calls): ending the objects one by one, while ending one may remove others,
   costs one pass over the table, not one per object. */
void *fwx__omap_any(const fwx__omap *m, size_t *cursor);
void fwx__omap_free(fwx__omap *m);
/* Hashes for it: every input bit reaches the low bits a table indexes by. */
uint64_t fwx__hash_bytes(const void *p, size_t n);
static inline uint64_t fwx__hash_u64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* ---- time ------------------------------------------------------------------------------ */
/* Monotonic milliseconds (uv_now of the loop is used where a loop is at hand). */
uint64_t fwx__now_ms(void);

#endif /* FWX_UTIL_H */
