/*
 * fwx - the SOCKS5 wire format (RFC 1928, RFC 1929): a pure parser and encoder. Internal to the
 * proxy backend.
 *
 * Pure C11 with no libuv, fwx core or I/O, so that it can be unit-tested (tests/check_socks_parse.c)
 * and fuzzed alone (fuzz/socks_parse_fuzz.c), as the FTP filter's ftp_parse.c is. socks.c keeps
 * the bytes a client sent so far in one bounded buffer and hands the whole of it to the parser of
 * the message it expects; the parser answers from those bytes alone, without state:
 *   - FWX__SOCKS_DONE: the buffer begins with one complete, valid message (*used bytes);
 *   - FWX__SOCKS_NEED_MORE: the buffer is a proper prefix of some valid message;
 *   - FWX__SOCKS_REFUSED: no valid message begins so; *err says why, and what to answer.
 * A refusal is decided at the first byte that makes the message invalid, so a message split
 * anywhere gives NEED_MORE up to that byte and then the same refusal as when it arrives whole.
 *
 * Strict: only what the RFCs list. Version 5; at least one method; RFC 1929 version 1 with a
 * name and a password of 1-255 bytes; commands CONNECT, BIND, UDP ASSOCIATE; RSV 0; address
 * types IPv4, IPv6 and a host name of 1-253 letters, digits, dots and hyphens (so never a NUL).
 * Nothing allocates; every length is a single byte, so no message exceeds FWX__SOCKS_*_MAX.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_PROXY_SOCKS_WIRE_H
#define FWX_PROXY_SOCKS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest message of each kind. */
#define FWX__SOCKS_GREETING_MAX (2 + 255)        /* VER NMETHODS METHODS */
#define FWX__SOCKS_AUTH_MAX (3 + 255 + 255)      /* VER ULEN UNAME PLEN PASSWD */
#define FWX__SOCKS_REQUEST_MAX (4 + 1 + 255 + 2) /* VER CMD RSV ATYP, a name with its length, PORT */
#define FWX__SOCKS_REPLY_MAX (4 + 16 + 2)        /* a reply or UDP header with an IPv6 address */
#define FWX__SOCKS_NAME_MAX 253                  /* a DNS name in text (RFC 1035 2.3.4) */

/* Reply codes (RFC 1928 section 6). */
enum {
    FWX__SOCKS_REP_OK = 0,
    FWX__SOCKS_REP_FAILURE = 1,
    FWX__SOCKS_REP_NOT_ALLOWED = 2,
    FWX__SOCKS_REP_NET_UNREACHABLE = 3,
    FWX__SOCKS_REP_HOST_UNREACHABLE = 4,
    FWX__SOCKS_REP_REFUSED = 5,
    FWX__SOCKS_REP_TTL_EXPIRED = 6,
    FWX__SOCKS_REP_CMD_UNSUPPORTED = 7,
    FWX__SOCKS_REP_ATYP_UNSUPPORTED = 8,
};

/* Methods (RFC 1928 section 3), commands and address types (section 4). */
enum { FWX__SOCKS_METHOD_NONE = 0x00, FWX__SOCKS_METHOD_USERPASS = 0x02, FWX__SOCKS_METHOD_REFUSED = 0xff };
enum { FWX__SOCKS_CMD_CONNECT = 1, FWX__SOCKS_CMD_BIND = 2, FWX__SOCKS_CMD_UDP = 3 };
enum { FWX__SOCKS_ATYP_IPV4 = 1, FWX__SOCKS_ATYP_NAME = 3, FWX__SOCKS_ATYP_IPV6 = 4 };

typedef enum fwx__socks_status {
    FWX__SOCKS_DONE = 0,
    FWX__SOCKS_NEED_MORE,
    FWX__SOCKS_REFUSED,
} fwx__socks_status;

/* Why a message was refused. */
typedef enum fwx__socks_err {
    FWX__SOCKS_E_NONE = 0,
    FWX__SOCKS_E_VERSION,        /* greeting: VER is not 5 (SOCKS 4, or not SOCKS at all) */
    FWX__SOCKS_E_NO_METHODS,     /* greeting: NMETHODS is 0 */
    FWX__SOCKS_E_AUTH_VERSION,   /* RFC 1929: VER is not 1 */
    FWX__SOCKS_E_AUTH_NO_USER,   /* RFC 1929: ULEN is 0 */
    FWX__SOCKS_E_AUTH_NO_PASS,   /* RFC 1929: PLEN is 0 */
    FWX__SOCKS_E_AUTH_USER_CHAR, /* a user name byte that is not printable ASCII (33-126) */
    FWX__SOCKS_E_AUTH_PASS_NUL,  /* a NUL in the password (no password of ours holds one) */
    FWX__SOCKS_E_REQ_VERSION,    /* request: VER is not 5 */
    FWX__SOCKS_E_CMD,            /* request: CMD is not 1, 2 or 3 */
    FWX__SOCKS_E_RSV,            /* request: RSV is not 0 */
    FWX__SOCKS_E_ATYP,           /* request: ATYP is not 1, 3 or 4 */
    FWX__SOCKS_E_NAME_EMPTY,     /* request: a host name of length 0 */
    FWX__SOCKS_E_NAME_LONG,      /* request: a host name over 253 bytes */
    FWX__SOCKS_E_NAME_CHAR,      /* request: a host name byte other than [A-Za-z0-9.-] (NUL too) */
    FWX__SOCKS_E_TRAILING,       /* request: bytes after it, before our reply (no pipelining past it) */
    FWX__SOCKS_E_ERR_COUNT
} fwx__socks_err;

/* What the gateway answers to a refusal before it closes. */
#define FWX__SOCKS_NO_REPLY (-1) /* nothing: close (the peer does not speak this protocol) */

/* A text for the log ("request: reserved byte not 0"). */
const char *fwx__socks_err_text(fwx__socks_err e);
/* The answer to send for e: for a request refusal its reply code (FWX__SOCKS_REP_*), for an
   RFC 1929 refusal its STATUS (1: failure), else FWX__SOCKS_NO_REPLY. For FWX__SOCKS_E_NAME_*
   it depends on the command: see fwx__socks_request. */
int fwx__socks_err_reply(fwx__socks_err e, uint8_t cmd);

/* VER NMETHODS METHODS (RFC 1928 section 3). */
typedef struct fwx__socks_greeting {
    const uint8_t *methods; /* into the caller's buffer */
    size_t n_methods;       /* 1-255 */
} fwx__socks_greeting;

/* Parses a greeting at the start of p[0..n). Bytes after it are the next message (a client may
   send its request before our answer) and are not looked at. */
fwx__socks_status fwx__socks_parse_greeting(const uint8_t *p, size_t n, fwx__socks_greeting *out, size_t *used,
                                            fwx__socks_err *err);
/* True if the greeting offers method m. */
bool fwx__socks_greeting_offers(const fwx__socks_greeting *g, uint8_t m);

/* VER ULEN UNAME PLEN PASSWD (RFC 1929 section 2). The name and password point into the
   caller's buffer (not NUL-terminated): the caller wipes the password there when done. Bytes
   after it are the request and are not looked at. */
typedef struct fwx__socks_auth {
    const uint8_t *user;
    size_t user_len; /* 1-255, printable ASCII */
    const uint8_t *pass;
    size_t pass_len; /* 1-255, no NUL */
} fwx__socks_auth;

fwx__socks_status fwx__socks_parse_auth(const uint8_t *p, size_t n, fwx__socks_auth *out, size_t *used,
                                        fwx__socks_err *err);

/* VER CMD RSV ATYP DST.ADDR DST.PORT (RFC 1928 section 4). */
typedef struct fwx__socks_request {
    uint8_t cmd;                  /* FWX__SOCKS_CMD_* */
    uint8_t atyp;                 /* FWX__SOCKS_ATYP_* */
    struct sockaddr_storage addr; /* IPv4 or IPv6: the address and port as sent (no mapping undone);
                                     a name: zeroed */
    char name[FWX__SOCKS_NAME_MAX + 1]; /* a name, NUL-terminated; else "" */
    size_t name_len;
    uint16_t port; /* host byte order, 0 included (the caller decides what port 0 means) */
} fwx__socks_request;

/* Parses a request that must be all of p[0..n): the client may send nothing after it until it
   has our reply, so more bytes are refused (FWX__SOCKS_E_TRAILING, reply 1). The reply code of
   a refusal is fwx__socks_err_reply(*err, cmd): 7 for an unknown command, 8 for an unknown
   address type, 1 for a bad version, RSV or trailing bytes; for a bad host name 4 (host
   unreachable) after CONNECT and 8 (address type not supported) after the others, as a name
   is of use to a CONNECT only. */
fwx__socks_status fwx__socks_parse_request(const uint8_t *p, size_t n, fwx__socks_request *out,
                                           fwx__socks_err *err);

/* The header of a UDP ASSOCIATE datagram (RFC 1928 section 7): RSV RSV FRAG ATYP DST.ADDR
   DST.PORT. Accepts only an unfragmented datagram (FRAG 0, RSV 0) to an IPv4 or IPv6 address;
   a name would need a lookup per datagram. *hdr gets the header's length; the payload follows.
   False for anything else (the caller drops the datagram, as RFC 1928 allows). */
bool fwx__socks_parse_udp(const uint8_t *p, size_t n, struct sockaddr_storage *dst, size_t *hdr);

/* ---- encoders: each returns the bytes written into out (at least the size named) ----------- */

/* VER METHOD: the method chosen, or FWX__SOCKS_METHOD_REFUSED. 2 bytes. */
size_t fwx__socks_encode_method(uint8_t out[2], uint8_t method);
/* VER STATUS (RFC 1929): 0 success, else failure. 2 bytes. */
size_t fwx__socks_encode_auth(uint8_t out[2], uint8_t status);
/* VER REP RSV ATYP BND.ADDR BND.PORT. bnd: an AF_INET or AF_INET6 address, or NULL (and any
   other family) for 0.0.0.0:0. 10 or 22 bytes. */
size_t fwx__socks_encode_reply(uint8_t out[FWX__SOCKS_REPLY_MAX], uint8_t rep, const struct sockaddr *bnd);
/* RSV RSV FRAG ATYP ADDR PORT in front of a datagram from src (AF_INET or AF_INET6) to the
   client; 0 for another family. 10 or 22 bytes. */
size_t fwx__socks_encode_udp(uint8_t out[FWX__SOCKS_REPLY_MAX], const struct sockaddr *src);

#endif
