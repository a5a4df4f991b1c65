/*
 * fwx - internal utilities shared by every part of the core. Not installed.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_UTIL_H
#define FWX_UTIL_H

#include <fwx/fwx.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>

/* Get back from an embedded interface to its object (Wine's impl_from_*). */
#define fwx__container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

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

/* ---- results --------------------------------------------------------------------------- */

/* The one mapping from a failed system or libuv call to a result (libuv's codes are negative
   errnos on Linux, so either sign works): the cases a caller can act on get their own codes
   (EADDRINUSE: FWX_E_ADDRINUSE, so the core tries another port; EADDRNOTAVAIL; ECONNREFUSED;
   ENOMEM; EINVAL), anything else is `fallback`, the "it failed" the caller documents
   (FWX_E_BACKEND for a backend's socket, FWX_E_INVALIDARG for a filter's socket call). */
fwx_result fwx__result_from_errno(int err, fwx_result fallback);

/* ---- time ------------------------------------------------------------------------------ */
/* Monotonic milliseconds (uv_now of the loop is used where a loop is at hand). */
uint64_t fwx__now_ms(void);

#endif /* FWX_UTIL_H */
