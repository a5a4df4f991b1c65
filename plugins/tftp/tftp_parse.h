/*
 * fwx TFTP filter - the strict TFTP request parser and the ERROR formatter.
 *
 * Pure C11 with no fwx dependency, so that it can be unit-tested, fuzzed and reviewed alone
 * (plugins/ftp/ftp_parse.c is the model). Nothing here allocates; every field is copied into a
 * fixed-size buffer after its length has been checked, and every number is range-checked digit
 * by digit before it is used.
 *
 * What it knows:
 * - read and write requests (RRQ, WRQ; RFC 1350 section 5): opcode, filename, NUL, mode, NUL;
 *   modes "netascii" and "octet" (case-insensitive); "mail" is obsolete (RFC 1350 says so and
 *   tftp-hpa refuses it) and refused like any other mode;
 * - the options that may follow (RFC 2347): name NUL value NUL pairs, names case-insensitive,
 *   each at most once; blksize (RFC 2348: 8-65464), timeout (RFC 2349: 1-255), tsize (RFC 2349:
 *   a decimal count; 0 in a RRQ) and windowsize (RFC 7440: 1-65535) are range-checked; other
 *   options pass, as RFC 2347 says a server ignores what it does not know, but under the same
 *   byte and length rules;
 * - the ERROR packet (opcode 5) the filter answers a refused request with.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_TFTP_PARSE_H
#define FWX_TFTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Opcodes (RFC 1350, RFC 2347). */
#define TFTP_OP_RRQ 1
#define TFTP_OP_WRQ 2
#define TFTP_OP_DATA 3
#define TFTP_OP_ACK 4
#define TFTP_OP_ERROR 5
#define TFTP_OP_OACK 6

/* ERROR codes (RFC 1350 appendix, RFC 2347). */
#define TFTP_ERR_UNDEFINED 0
#define TFTP_ERR_NOT_FOUND 1
#define TFTP_ERR_ACCESS 2
#define TFTP_ERR_ILLEGAL_OP 4
#define TFTP_ERR_OPTION 8

/* The longest request datagram. RFC 2347 bounds a request with options to 512 octets; a larger
   one is no TFTP client's. */
#define TFTP_REQ_MAX 512
/* The longest filename (bytes, without its NUL). PXE and firmware paths are far shorter; a
   longer name is an attack on the server's path handling, not a file. */
#define TFTP_FILENAME_MAX 255
/* The longest option name and option value (bytes, without NUL). */
#define TFTP_OPT_NAME_MAX 32
#define TFTP_OPT_VALUE_MAX 32
/* The most options one request may carry (the four known ones and a few more). */
#define TFTP_OPTS_MAX 8
/* The longest ERROR message the formatter writes (bytes, without NUL). */
#define TFTP_ERRMSG_MAX 100

/* Transfer modes. "mail" (RFC 1350) is for write requests only. */
typedef enum tftp_mode { TFTP_MODE_NETASCII = 1, TFTP_MODE_OCTET = 2, TFTP_MODE_MAIL = 3 } tftp_mode;

/* The known options, as bits of tftp_request::known. */
#define TFTP_OPT_BLKSIZE 0x1u
#define TFTP_OPT_TIMEOUT 0x2u
#define TFTP_OPT_TSIZE 0x4u
#define TFTP_OPT_WINDOWSIZE 0x8u

/* What a request is; every status but OK is a refusal. */
typedef enum tftp_status {
    TFTP_P_OK = 0,
    TFTP_P_SHORT,           /* fewer than the opcode and two NULs */
    TFTP_P_TOO_LONG,        /* over TFTP_REQ_MAX bytes */
    TFTP_P_NOT_REQUEST,     /* opcode other than RRQ or WRQ */
    TFTP_P_NO_NUL,          /* a field (filename, mode, option name or value) without its NUL */
    TFTP_P_EMPTY_NAME,      /* an empty filename */
    TFTP_P_NAME_TOO_LONG,   /* filename over TFTP_FILENAME_MAX */
    TFTP_P_BAD_BYTE,        /* a control byte (0x01-0x1f, 0x7f) or 8-bit byte in a field */
    TFTP_P_MODE,            /* a mode other than netascii, octet (or mail in a WRQ) */
    TFTP_P_OPT_EMPTY,       /* an empty option name, or a name without a value */
    TFTP_P_OPT_TOO_LONG,    /* an option name or value over its maximum */
    TFTP_P_OPT_DUP,         /* the same option twice (case-insensitive) */
    TFTP_P_OPT_TOO_MANY,    /* over TFTP_OPTS_MAX options */
    TFTP_P_OPT_VALUE,       /* a known option with a value out of its RFC's range */
} tftp_status;

/* A short reason, for the log and the ERROR message ("no NUL after a field", ...). */
const char *tftp_status_text(tftp_status st);

/* One option, NUL-terminated copies. */
typedef struct tftp_option {
    char name[TFTP_OPT_NAME_MAX + 1];
    char value[TFTP_OPT_VALUE_MAX + 1];
} tftp_option;

/* A parsed request. Fields are valid only after TFTP_P_OK. */
typedef struct tftp_request {
    int opcode;                             /* TFTP_OP_RRQ or TFTP_OP_WRQ */
    char filename[TFTP_FILENAME_MAX + 1];   /* NUL-terminated copy */
    size_t filename_len;
    tftp_mode mode;
    unsigned n_opts;
    tftp_option opts[TFTP_OPTS_MAX];
    unsigned known;          /* TFTP_OPT_* bits of the known options present */
    uint32_t blksize;        /* when known & TFTP_OPT_BLKSIZE */
    uint32_t timeout;        /* when known & TFTP_OPT_TIMEOUT */
    uint64_t tsize;          /* when known & TFTP_OPT_TSIZE */
    uint32_t windowsize;     /* when known & TFTP_OPT_WINDOWSIZE */
} tftp_request;

/* Parses one datagram as a request. @p req may be written even on failure. */
tftp_status tftp_parse_request(const uint8_t *pkt, size_t len, tftp_request *req);

/* The opcode of any datagram (first two bytes, big-endian), or -1 under two bytes. */
int tftp_opcode(const uint8_t *pkt, size_t len);

/* The ERROR code the filter sends the client for a refused request. */
uint16_t tftp_status_error_code(tftp_status st);

/* Writes an ERROR packet (opcode 5, code, message, NUL) into out/cap. The message is cut to
   TFTP_ERRMSG_MAX bytes and to what @p cap leaves, and any byte that is not printable ASCII
   becomes '?'. The filter passes the refused datagram's length as @p cap, so the gateway never
   answers a (possibly spoofed) source with more bytes than it received (catalog row 65 in doc/security.md).
   Returns the length, or 0 (nothing written) when @p cap is under the 5 bytes of an empty
   ERROR packet. */
size_t tftp_fmt_error(uint8_t *out, size_t cap, uint16_t code, const char *msg);

/* Why the request's source may not receive a transfer, or NULL when it may: port 0 or under
   1024 (catalog row 60: a server's DATA aimed at the client's port must never hit a service),
   and addresses that are no single host (unspecified, loopback, multicast, IPv4 broadcast or
   0.0.0.0/8). The gateway's own addresses are the filter's to check (the parser knows none).
   @p sa is AF_INET or AF_INET6 (a v4-mapped IPv6 address is judged as IPv4). */
struct sockaddr;
const char *tftp_check_client(const struct sockaddr *sa);

#endif
