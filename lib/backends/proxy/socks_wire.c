/*
 * fwx - the SOCKS5 wire format (see socks_wire.h).
 *
 * Each parser walks the buffer field by field and checks a field as soon as its byte is
 * there, before it asks for more: that is what makes the verdict independent of how the bytes
 * were split into reads. Lengths are single bytes, so no sum here can wrap.
 * SPDX-License-Identifier: MIT
 */
#include "socks_wire.h"

#include <netinet/in.h>
#include <string.h>

const char *fwx__socks_err_text(fwx__socks_err e)
{
    switch (e) {
    case FWX__SOCKS_E_NONE:
        return "ok";
    case FWX__SOCKS_E_VERSION:
        return "not SOCKS version 5";
    case FWX__SOCKS_E_REQ_VERSION:
        return "malformed request (version not 5)";
    case FWX__SOCKS_E_NO_METHODS:
        return "no authentication methods";
    case FWX__SOCKS_E_AUTH_VERSION:
        return "malformed username/password request (version not 1)";
    case FWX__SOCKS_E_AUTH_NO_USER:
        return "malformed username/password request (empty user name)";
    case FWX__SOCKS_E_AUTH_NO_PASS:
        return "empty password";
    case FWX__SOCKS_E_AUTH_USER_CHAR:
        return "unprintable user name";
    case FWX__SOCKS_E_AUTH_PASS_NUL:
        return "NUL byte in the password";
    case FWX__SOCKS_E_CMD:
        return "unknown command";
    case FWX__SOCKS_E_RSV:
        return "malformed request (reserved byte not 0)";
    case FWX__SOCKS_E_ATYP:
        return "unknown address type";
    case FWX__SOCKS_E_NAME_EMPTY:
        return "bad host name (empty)";
    case FWX__SOCKS_E_NAME_LONG:
        return "bad host name (over 253 bytes)";
    case FWX__SOCKS_E_NAME_CHAR:
        return "bad host name (a byte other than letters, digits, dots and hyphens)";
    case FWX__SOCKS_E_TRAILING:
        return "bytes after the request";
    case FWX__SOCKS_E_ERR_COUNT:
        break;
    }
    return "bad SOCKS message";
}

int fwx__socks_err_reply(fwx__socks_err e, uint8_t cmd)
{
    switch (e) {
    case FWX__SOCKS_E_AUTH_NO_PASS:
    case FWX__SOCKS_E_AUTH_USER_CHAR:
    case FWX__SOCKS_E_AUTH_PASS_NUL:
        return 1; /* RFC 1929 STATUS failure: a well-formed login that cannot be ours */
    case FWX__SOCKS_E_CMD:
        return FWX__SOCKS_REP_CMD_UNSUPPORTED;
    case FWX__SOCKS_E_REQ_VERSION:
    case FWX__SOCKS_E_RSV:
    case FWX__SOCKS_E_TRAILING:
        return FWX__SOCKS_REP_FAILURE;
    case FWX__SOCKS_E_ATYP:
        return FWX__SOCKS_REP_ATYP_UNSUPPORTED;
    case FWX__SOCKS_E_NAME_EMPTY:
    case FWX__SOCKS_E_NAME_LONG:
    case FWX__SOCKS_E_NAME_CHAR:
        return cmd == FWX__SOCKS_CMD_CONNECT ? FWX__SOCKS_REP_HOST_UNREACHABLE : FWX__SOCKS_REP_ATYP_UNSUPPORTED;
    case FWX__SOCKS_E_NONE:
    case FWX__SOCKS_E_VERSION:
    case FWX__SOCKS_E_NO_METHODS:
    case FWX__SOCKS_E_AUTH_VERSION:
    case FWX__SOCKS_E_AUTH_NO_USER:
    case FWX__SOCKS_E_ERR_COUNT:
        break;
    }
    return FWX__SOCKS_NO_REPLY;
}

static fwx__socks_status refused(fwx__socks_err *err, fwx__socks_err e)
{
    *err = e;
    return FWX__SOCKS_REFUSED;
}

/* ---- greeting ---------------------------------------------------------------------------------- */

fwx__socks_status fwx__socks_parse_greeting(const uint8_t *p, size_t n, fwx__socks_greeting *out, size_t *used,
                                            fwx__socks_err *err)
{
    *err = FWX__SOCKS_E_NONE;
    if (n < 1)
        return FWX__SOCKS_NEED_MORE;
    if (p[0] != 5)
        return refused(err, FWX__SOCKS_E_VERSION);
    if (n < 2)
        return FWX__SOCKS_NEED_MORE;
    if (p[1] == 0)
        return refused(err, FWX__SOCKS_E_NO_METHODS);
    size_t need = 2 + (size_t)p[1];
    if (n < need)
        return FWX__SOCKS_NEED_MORE;
    out->methods = p + 2;
    out->n_methods = p[1];
    *used = need;
    return FWX__SOCKS_DONE;
}

bool fwx__socks_greeting_offers(const fwx__socks_greeting *g, uint8_t m)
{
    return g->n_methods > 0 && memchr(g->methods, m, g->n_methods) != NULL;
}

/* ---- RFC 1929 ---------------------------------------------------------------------------------- */

fwx__socks_status fwx__socks_parse_auth(const uint8_t *p, size_t n, fwx__socks_auth *out, size_t *used,
                                        fwx__socks_err *err)
{
    *err = FWX__SOCKS_E_NONE;
    if (n < 1)
        return FWX__SOCKS_NEED_MORE;
    if (p[0] != 1)
        return refused(err, FWX__SOCKS_E_AUTH_VERSION);
    if (n < 2)
        return FWX__SOCKS_NEED_MORE;
    size_t ulen = p[1];
    if (ulen == 0)
        return refused(err, FWX__SOCKS_E_AUTH_NO_USER);
    /* The name lands in the log and in the policy's user rules: printable, no space. */
    for (size_t i = 0; i < ulen && 2 + i < n; i++)
        if (p[2 + i] <= ' ' || p[2 + i] >= 0x7f)
            return refused(err, FWX__SOCKS_E_AUTH_USER_CHAR);
    if (n < 2 + ulen + 1)
        return FWX__SOCKS_NEED_MORE;
    size_t plen = p[2 + ulen], at = 3 + ulen;
    if (plen == 0)
        return refused(err, FWX__SOCKS_E_AUTH_NO_PASS);
    /* A password is handed on as a C string: a NUL would cut it short. */
    for (size_t i = 0; i < plen && at + i < n; i++)
        if (p[at + i] == 0)
            return refused(err, FWX__SOCKS_E_AUTH_PASS_NUL);
    if (n < at + plen)
        return FWX__SOCKS_NEED_MORE;
    out->user = p + 2;
    out->user_len = ulen;
    out->pass = p + at;
    out->pass_len = plen;
    *used = at + plen;
    return FWX__SOCKS_DONE;
}

/* ---- request ------------------------------------------------------------------------------------- */

static bool name_byte_ok(uint8_t ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-';
}

fwx__socks_status fwx__socks_parse_request(const uint8_t *p, size_t n, fwx__socks_request *out,
                                           fwx__socks_err *err)
{
    *err = FWX__SOCKS_E_NONE;
    if (n < 1)
        return FWX__SOCKS_NEED_MORE;
    if (p[0] != 5)
        return refused(err, FWX__SOCKS_E_REQ_VERSION);
    if (n < 2)
        return FWX__SOCKS_NEED_MORE;
    if (p[1] != FWX__SOCKS_CMD_CONNECT && p[1] != FWX__SOCKS_CMD_BIND && p[1] != FWX__SOCKS_CMD_UDP)
        return refused(err, FWX__SOCKS_E_CMD);
    if (n < 3)
        return FWX__SOCKS_NEED_MORE;
    if (p[2] != 0)
        return refused(err, FWX__SOCKS_E_RSV);
    if (n < 4)
        return FWX__SOCKS_NEED_MORE;
    size_t addr_len;
    switch (p[3]) {
    case FWX__SOCKS_ATYP_IPV4:
        addr_len = 4;
        break;
    case FWX__SOCKS_ATYP_IPV6:
        addr_len = 16;
        break;
    case FWX__SOCKS_ATYP_NAME:
        if (n < 5)
            return FWX__SOCKS_NEED_MORE;
        if (p[4] == 0)
            return refused(err, FWX__SOCKS_E_NAME_EMPTY);
        if (p[4] > FWX__SOCKS_NAME_MAX)
            return refused(err, FWX__SOCKS_E_NAME_LONG);
        for (size_t i = 0; i < p[4] && 5 + i < n; i++)
            if (!name_byte_ok(p[5 + i]))
                return refused(err, FWX__SOCKS_E_NAME_CHAR);
        addr_len = 1 + (size_t)p[4];
        break;
    default:
        return refused(err, FWX__SOCKS_E_ATYP);
    }
    size_t need = 4 + addr_len + 2;
    if (n < need)
        return FWX__SOCKS_NEED_MORE;
    if (n > need)
        return refused(err, FWX__SOCKS_E_TRAILING);
    memset(out, 0, sizeof *out);
    out->cmd = p[1];
    out->atyp = p[3];
    out->port = (uint16_t)(p[need - 2] << 8 | p[need - 1]);
    if (p[3] == FWX__SOCKS_ATYP_IPV4) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&out->addr;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, p + 4, 4);
        s4->sin_port = htons(out->port);
    } else if (p[3] == FWX__SOCKS_ATYP_IPV6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->addr;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, p + 4, 16);
        s6->sin6_port = htons(out->port);
    } else {
        out->name_len = p[4];
        memcpy(out->name, p + 5, out->name_len);
        out->name[out->name_len] = '\0';
    }
    return FWX__SOCKS_DONE;
}

/* ---- UDP ASSOCIATE datagrams --------------------------------------------------------------------- */

bool fwx__socks_parse_udp(const uint8_t *p, size_t n, struct sockaddr_storage *dst, size_t *hdr)
{
    if (n < 4 || p[0] != 0 || p[1] != 0 || p[2] != 0)
        return false; /* short, or a fragment: fragments are not reassembled */
    memset(dst, 0, sizeof *dst);
    if (p[3] == FWX__SOCKS_ATYP_IPV4 && n >= 10) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)dst;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, p + 4, 4);
        memcpy(&s4->sin_port, p + 8, 2);
        *hdr = 10;
        return true;
    }
    if (p[3] == FWX__SOCKS_ATYP_IPV6 && n >= 22) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)dst;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, p + 4, 16);
        memcpy(&s6->sin6_port, p + 20, 2);
        *hdr = 22;
        return true;
    }
    return false;
}

/* ---- encoders ------------------------------------------------------------------------------------ */

size_t fwx__socks_encode_method(uint8_t out[2], uint8_t method)
{
    out[0] = 5;
    out[1] = method;
    return 2;
}

size_t fwx__socks_encode_auth(uint8_t out[2], uint8_t status)
{
    out[0] = 1;
    out[1] = status;
    return 2;
}

/* ATYP ADDR PORT of an address; 0.0.0.0:0 for NULL or another family. */
static size_t encode_addr(uint8_t *out, const struct sockaddr *sa)
{
    if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        out[0] = FWX__SOCKS_ATYP_IPV6;
        memcpy(out + 1, &s6->sin6_addr, 16);
        memcpy(out + 17, &s6->sin6_port, 2);
        return 19;
    }
    out[0] = FWX__SOCKS_ATYP_IPV4;
    if (sa != NULL && sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        memcpy(out + 1, &s4->sin_addr, 4);
        memcpy(out + 5, &s4->sin_port, 2);
    } else {
        memset(out + 1, 0, 6);
    }
    return 7;
}

size_t fwx__socks_encode_reply(uint8_t out[FWX__SOCKS_REPLY_MAX], uint8_t rep, const struct sockaddr *bnd)
{
    out[0] = 5;
    out[1] = rep;
    out[2] = 0;
    return 3 + encode_addr(out + 3, bnd);
}

size_t fwx__socks_encode_udp(uint8_t out[FWX__SOCKS_REPLY_MAX], const struct sockaddr *src)
{
    if (src == NULL || (src->sa_family != AF_INET && src->sa_family != AF_INET6))
        return 0;
    out[0] = out[1] = out[2] = 0; /* RSV RSV FRAG */
    return 3 + encode_addr(out + 3, src);
}
