/*
 * fwx TFTP filter - the strict TFTP request parser and the ERROR formatter (see tftp_parse.h).
 * SPDX-License-Identifier: MIT
 */
#include "tftp_parse.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

const char *tftp_status_text(tftp_status st)
{
    switch (st) {
    case TFTP_P_OK: return "ok";
    case TFTP_P_SHORT: return "truncated request";
    case TFTP_P_TOO_LONG: return "request over 512 bytes";
    case TFTP_P_NOT_REQUEST: return "not a read or write request";
    case TFTP_P_NO_NUL: return "field without NUL terminator";
    case TFTP_P_EMPTY_NAME: return "empty filename";
    case TFTP_P_NAME_TOO_LONG: return "filename too long";
    case TFTP_P_BAD_BYTE: return "control or 8-bit byte in a field";
    case TFTP_P_MODE: return "unknown transfer mode";
    case TFTP_P_OPT_EMPTY: return "empty option name or value";
    case TFTP_P_OPT_TOO_LONG: return "option name or value too long";
    case TFTP_P_OPT_DUP: return "duplicate option";
    case TFTP_P_OPT_TOO_MANY: return "too many options";
    case TFTP_P_OPT_VALUE: return "option value out of range";
    }
    return "unknown";
}

uint16_t tftp_status_error_code(tftp_status st)
{
    switch (st) {
    case TFTP_P_OK: return TFTP_ERR_UNDEFINED;
    case TFTP_P_OPT_EMPTY:
    case TFTP_P_OPT_TOO_LONG:
    case TFTP_P_OPT_DUP:
    case TFTP_P_OPT_TOO_MANY:
    case TFTP_P_OPT_VALUE: return TFTP_ERR_OPTION; /* RFC 2347: option negotiation refused */
    default: return TFTP_ERR_ILLEGAL_OP;
    }
}

int tftp_opcode(const uint8_t *pkt, size_t len)
{
    if (pkt == NULL || len < 2)
        return -1;
    return (int)(((unsigned)pkt[0] << 8) | pkt[1]);
}

static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

static bool eq_nocase(const char *a, const char *b)
{
    for (; *a != '\0' && *b != '\0'; a++, b++)
        if (lower(*a) != lower(*b))
            return false;
    return *a == *b;
}

/* The field starting at pkt[*pos]: its length up to the NUL, which must exist. Every byte must
   be printable ASCII (0x20-0x7e). Advances *pos past the NUL. */
static tftp_status field(const uint8_t *pkt, size_t len, size_t *pos, size_t *flen)
{
    const uint8_t *nul = memchr(pkt + *pos, 0, len - *pos);
    if (nul == NULL)
        return TFTP_P_NO_NUL;
    size_t n = (size_t)(nul - (pkt + *pos));
    for (size_t i = 0; i < n; i++) {
        uint8_t c = pkt[*pos + i];
        if (c < 0x20 || c > 0x7e)
            return TFTP_P_BAD_BYTE;
    }
    *flen = n;
    return TFTP_P_OK;
}

/* A decimal number of at most 20 digits, no sign, no leading zero (except "0"), <= max. */
static bool number(const char *s, uint64_t max, uint64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 20 || (n > 1 && s[0] == '0'))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* Range-checks a known option; unknown ones pass. */
static tftp_status known_option(tftp_request *req, const tftp_option *o)
{
    uint64_t v;
    if (eq_nocase(o->name, "blksize")) {
        if (!number(o->value, 65464, &v) || v < 8)
            return TFTP_P_OPT_VALUE;
        req->blksize = (uint32_t)v;
        req->known |= TFTP_OPT_BLKSIZE;
    } else if (eq_nocase(o->name, "timeout")) {
        if (!number(o->value, 255, &v) || v < 1)
            return TFTP_P_OPT_VALUE;
        req->timeout = (uint32_t)v;
        req->known |= TFTP_OPT_TIMEOUT;
    } else if (eq_nocase(o->name, "tsize")) {
        /* RFC 2349: a read request asks with 0; a write request gives the size. */
        if (!number(o->value, UINT64_MAX, &v) || (req->opcode == TFTP_OP_RRQ && v != 0))
            return TFTP_P_OPT_VALUE;
        req->tsize = v;
        req->known |= TFTP_OPT_TSIZE;
    } else if (eq_nocase(o->name, "windowsize")) {
        if (!number(o->value, 65535, &v) || v < 1)
            return TFTP_P_OPT_VALUE;
        req->windowsize = (uint32_t)v;
        req->known |= TFTP_OPT_WINDOWSIZE;
    }
    return TFTP_P_OK;
}

tftp_status tftp_parse_request(const uint8_t *pkt, size_t len, tftp_request *req)
{
    memset(req, 0, sizeof *req);
    if (pkt == NULL || len < 2)
        return TFTP_P_SHORT;
    if (len > TFTP_REQ_MAX)
        return TFTP_P_TOO_LONG;
    int op = tftp_opcode(pkt, len);
    if (op != TFTP_OP_RRQ && op != TFTP_OP_WRQ)
        return TFTP_P_NOT_REQUEST;
    req->opcode = op;
    if (len < 6) /* opcode, one filename byte, NUL, one mode byte, NUL */
        return TFTP_P_SHORT;

    size_t pos = 2, n;
    tftp_status st = field(pkt, len, &pos, &n);
    if (st != TFTP_P_OK)
        return st;
    if (n == 0)
        return TFTP_P_EMPTY_NAME;
    if (n > TFTP_FILENAME_MAX)
        return TFTP_P_NAME_TOO_LONG;
    memcpy(req->filename, pkt + pos, n);
    req->filename[n] = '\0';
    req->filename_len = n;
    pos += n + 1;

    if (pos >= len)
        return TFTP_P_SHORT; /* no mode at all */
    st = field(pkt, len, &pos, &n);
    if (st != TFTP_P_OK)
        return st;
    char mode[9];
    if (n == 0 || n >= sizeof mode)
        return TFTP_P_MODE;
    memcpy(mode, pkt + pos, n);
    mode[n] = '\0';
    if (eq_nocase(mode, "netascii"))
        req->mode = TFTP_MODE_NETASCII;
    else if (eq_nocase(mode, "octet"))
        req->mode = TFTP_MODE_OCTET;
    else if (eq_nocase(mode, "mail") && op == TFTP_OP_WRQ)
        req->mode = TFTP_MODE_MAIL;
    else
        return TFTP_P_MODE;
    pos += n + 1;

    while (pos < len) {
        if (req->n_opts == TFTP_OPTS_MAX)
            return TFTP_P_OPT_TOO_MANY;
        tftp_option *o = &req->opts[req->n_opts];
        st = field(pkt, len, &pos, &n);
        if (st != TFTP_P_OK)
            return st;
        if (n == 0)
            return TFTP_P_OPT_EMPTY;
        if (n > TFTP_OPT_NAME_MAX)
            return TFTP_P_OPT_TOO_LONG;
        memcpy(o->name, pkt + pos, n);
        o->name[n] = '\0';
        pos += n + 1;
        if (pos >= len)
            return TFTP_P_OPT_EMPTY; /* a name without a value */
        st = field(pkt, len, &pos, &n);
        if (st != TFTP_P_OK)
            return st;
        if (n == 0)
            return TFTP_P_OPT_EMPTY;
        if (n > TFTP_OPT_VALUE_MAX)
            return TFTP_P_OPT_TOO_LONG;
        memcpy(o->value, pkt + pos, n);
        o->value[n] = '\0';
        pos += n + 1;
        for (unsigned i = 0; i < req->n_opts; i++)
            if (eq_nocase(req->opts[i].name, o->name))
                return TFTP_P_OPT_DUP;
        st = known_option(req, o);
        if (st != TFTP_P_OK)
            return st;
        req->n_opts++;
    }
    return TFTP_P_OK;
}

size_t tftp_fmt_error(uint8_t *out, size_t cap, uint16_t code, const char *msg)
{
    if (out == NULL || cap < 5)
        return 0;
    size_t n = msg != NULL ? strnlen(msg, TFTP_ERRMSG_MAX) : 0;
    if (n > cap - 5)
        n = cap - 5;
    size_t total = 4 + n + 1;
    out[0] = 0;
    out[1] = TFTP_OP_ERROR;
    out[2] = (uint8_t)(code >> 8);
    out[3] = (uint8_t)code;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)msg[i];
        out[4 + i] = (c >= 0x20 && c <= 0x7e) ? c : '?';
    }
    out[4 + n] = 0;
    return total;
}

const char *tftp_check_client(const struct sockaddr *sa)
{
    uint32_t v4;
    uint16_t port;
    if (sa == NULL)
        return "no client address";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        memcpy(&v4, &s4->sin_addr, 4);
        port = ntohs(s4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        const uint8_t *b = s6->sin6_addr.s6_addr;
        port = ntohs(s6->sin6_port);
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(b, mapped, 12) == 0) {
            memcpy(&v4, b + 12, 4);
        } else {
            if (IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr))
                return "unspecified client address";
            if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
                return "loopback client address";
            if (IN6_IS_ADDR_MULTICAST(&s6->sin6_addr))
                return "multicast client address";
            goto check_port;
        }
    } else {
        return "not an IP address";
    }
    v4 = ntohl(v4);
    if ((v4 >> 24) == 0)
        return "unspecified client address";
    if ((v4 >> 24) == 127)
        return "loopback client address";
    if ((v4 >> 28) == 0xe)
        return "multicast client address";
    if (v4 == 0xffffffffu)
        return "broadcast client address";
check_port:
    if (port < 1024)
        return "privileged client port";
    return NULL;
}
