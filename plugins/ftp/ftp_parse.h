/*
 * fwx FTP filter - the strict FTP parser and formatter.
 *
 * Pure C11 with no fwx dependency, so that it can be unit-tested, fuzzed and reviewed alone
 * (OpenBSD ftp-proxy is the model: small, bounded, strict). Nothing here allocates; every
 * buffer is a fixed size and every number is range-checked digit by digit before it is used.
 *
 * What it knows:
 * - line assembly per direction: CRLF is the only terminator; bare CR, bare LF, NUL, other
 *   control bytes and 8-bit bytes make the line bad; a line holds at most FTP_LINE_MAX bytes
 *   including its CRLF, and a longer one is reported once and discarded up to its CRLF
 *   without being buffered;
 * - commands: a verb of 3 or 4 ASCII letters (case-insensitive), then nothing or one space
 *   and the argument;
 * - PORT (RFC 959), EPRT (RFC 2428), 227 (RFC 1123 4.1.2.6), 229 (RFC 2428) and multi-line
 *   replies (RFC 959 4.2);
 * - formatters for the PORT, EPRT, 227 and 229 lines the filter writes instead.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_FTP_PARSE_H
#define FWX_FTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest line, CRLF included (RFC 959 does not bound it; 512 is ample for every command
   and reply a client or server really sends, and OpenBSD ftp-proxy uses 500). */
#define FTP_LINE_MAX 512
/* The longest line content (without CRLF). */
#define FTP_LINE_CONTENT_MAX (FTP_LINE_MAX - 2)

/* ---- line assembly ------------------------------------------------------------------------ */

/* What a completed (or abandoned) line is. */
typedef enum ftp_line_status {
    FTP_LINE_OK = 0,       /* a clean line; content given without its CRLF */
    FTP_LINE_BARE_CR,      /* a CR not followed by LF inside the line */
    FTP_LINE_BARE_LF,      /* an LF not preceded by CR inside the line (FTP stream injection) */
    FTP_LINE_NUL,          /* a NUL byte */
    FTP_LINE_CONTROL,      /* another control byte (0x01-0x1f except HT, or 0x7f) */
    FTP_LINE_8BIT,         /* a byte of 0x80 or above (Telnet IAC included) */
    FTP_LINE_TOO_LONG,     /* over FTP_LINE_MAX bytes: reported at once, the rest discarded */
} ftp_line_status;

/* A human-readable reason for a bad line ("bare LF inside a line", ...). */
const char *ftp_line_status_text(ftp_line_status st);

/* Called once per line, in stream order. For FTP_LINE_OK, line/len is the content without
   CRLF (borrowed, valid for the call). For the other statuses line/len is whatever the bounded
   buffer holds (up to FTP_LINE_CONTENT_MAX bytes, for the log), never the whole line.
   A TOO_LONG line is reported when the limit is crossed, not at its end, so a peer that never
   sends CRLF still gets an answer; its eventual CRLF then ends it silently. */
typedef void (*ftp_line_cb)(void *arg, ftp_line_status st, const char *line, size_t len);

/* The per-direction assembler. Zero it (or ftp_lines_init) to start. */
typedef struct ftp_lines {
    char buf[FTP_LINE_CONTENT_MAX + 1]; /* content so far (+1 for a NUL the filter may add) */
    size_t len;                         /* bytes in buf */
    bool cr;                            /* the last byte was a CR */
    bool discarding;                    /* too long: dropping bytes up to the CRLF */
    ftp_line_status error;              /* first error in the current line, FTP_LINE_OK if none */
} ftp_lines;

void ftp_lines_init(ftp_lines *l);

/* Feeds @p n bytes; calls @p cb for every line that ends in them. A line split over any number
   of calls behaves exactly as one fed whole. Returns the number of lines reported. */
size_t ftp_lines_feed(ftp_lines *l, const uint8_t *p, size_t n, ftp_line_cb cb, void *arg);

/* True while a line is partly assembled (bytes held, or discarding). */
bool ftp_lines_partial(const ftp_lines *l);

/* ---- commands ----------------------------------------------------------------------------- */

/* A parsed command line. */
typedef struct ftp_cmd {
    char verb[5];    /* upper case, NUL-terminated */
    const char *arg; /* after the single space; points into the line; NULL when there is none */
    size_t arg_len;
} ftp_cmd;

/* Splits a command line: 3 or 4 ASCII letters, then the end or exactly one space and an
   argument (which may itself be anything the line rules allowed, including more spaces).
   Returns false for anything else ("", "P", "PORT\t1", "XPORTY 1", " PORT 1"). */
bool ftp_cmd_parse(const char *line, size_t len, ftp_cmd *out);

/* ---- addresses ---------------------------------------------------------------------------- */

/* Why an argument or reply was refused by the parser. */
typedef enum ftp_perr {
    FTP_P_OK = 0,
    FTP_P_SYNTAX,     /* does not follow the grammar */
    FTP_P_RANGE,      /* a number out of range (>255, port 0, port > 65535) */
    FTP_P_FAMILY,     /* EPRT: unknown network protocol */
    FTP_P_ZONE,       /* EPRT: an IPv6 zone id */
} ftp_perr;

const char *ftp_perr_text(ftp_perr e);

/* PORT h1,h2,h3,h4,p1,p2: exactly d{1,3}(,d{1,3}){5}, each 0-255, no sign, space or leading
   zero ("0" itself is fine). Fills an AF_INET sockaddr_in (port may be any 0-65535: ports are
   policy, checked by the caller). */
ftp_perr ftp_parse_port(const char *arg, size_t len, struct sockaddr_storage *out);

/* EPRT <d><net-prt><d><net-addr><d><tcp-port><d>: d is one byte 33-126, not a digit, used
   exactly four times; net-prt "1" (strict dotted quad) or "2" (inet_pton, no zone id); port
   1-65535 with at most 5 digits and no leading zero. A v4-mapped IPv6 address is returned as
   AF_INET. *net_prt receives 1 or 2. */
ftp_perr ftp_parse_eprt(const char *arg, size_t len, struct sockaddr_storage *out, int *net_prt);

/* A 227 reply line (the whole line, "227 ..."): scans to the first digit after the code, then
   exactly six numbers d{1,3} (0-255, decimal; leading zeros accepted) separated by single
   commas, followed by anything that is neither a digit nor a comma. Fills AF_INET. */
ftp_perr ftp_parse_227(const char *line, size_t len, struct sockaddr_storage *out);

/* A 229 reply line ("229 ..."): the first "(" starts <d><d><d>port<d>")" with d one byte
   33-126 that is not a digit, the same four times, net-prt and address empty, port 1-65535
   (at most 5 digits, no leading zero); no second "(" after it. *port receives the port. */
ftp_perr ftp_parse_229(const char *line, size_t len, uint16_t *port);

/* ---- replies ------------------------------------------------------------------------------ */

/* Where a reply line stands in its reply. */
typedef enum ftp_reply_kind {
    FTP_R_FINAL,      /* "NNN text" outside a multi-line reply, or the last line "NNN text" of one */
    FTP_R_MULTI_START,/* "NNN-text": the first line of a multi-line reply */
    FTP_R_MULTI_TEXT, /* any line inside a multi-line reply that does not end it */
    FTP_R_BAD,        /* outside a multi-line reply and not "NNN" [ " " | "-" ] text */
} ftp_reply_kind;

typedef struct ftp_replies {
    bool multi;  /* inside a multi-line reply */
    int code;    /* its code */
} ftp_replies;

/* Classifies one reply line and advances the state. *code receives the reply code (for
   FTP_R_FINAL and FTP_R_MULTI_START; the multi-line code for FTP_R_MULTI_TEXT). A code is three
   digits, the first 1-5. */
ftp_reply_kind ftp_replies_line(ftp_replies *r, const char *line, size_t len, int *code);

/* ---- address policy --------------------------------------------------------------------- */

/* Why a data port is never acceptable (port 0, below 1024), or NULL. */
const char *ftp_check_port_number(uint16_t port);
/* Why an address is never a data-connection end (unspecified, broadcast, multicast), or NULL. */
const char *ftp_check_address(const struct sockaddr *sa);
/* Why the address of a PORT/EPRT from the client @p client may not be used, or NULL: it must be
   the client's own (no bounce, catalog #1 in doc/security.md), with a port of 1024 or more (#3), and not a group
   or unspecified address (#4; the gateway's own addresses only the core knows). */
const char *ftp_check_active(const struct sockaddr *addr, const struct sockaddr *client);
/* True if both are the same IP address (ports ignored). */
bool ftp_same_ip(const struct sockaddr *a, const struct sockaddr *b);

/* ---- formatters --------------------------------------------------------------------------- */

/* Each writes one line with its CRLF into out (size cap) and returns its length, or 0 if the
   address is not of the right family or cap is too small. */
size_t ftp_fmt_port(char *out, size_t cap, const struct sockaddr *sa);
size_t ftp_fmt_eprt(char *out, size_t cap, const struct sockaddr *sa);
size_t ftp_fmt_227(char *out, size_t cap, const struct sockaddr *sa);
size_t ftp_fmt_229(char *out, size_t cap, uint16_t port);

#endif /* FWX_FTP_PARSE_H */
