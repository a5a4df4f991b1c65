/*
 * fwx FTP filter - the strict FTP parser and formatter (see ftp_parse.h).
 *
 * Every number is read digit by digit with the digit count bounded before any arithmetic, so
 * no accumulator can wrap (catalog #6, doc/security.md); nothing accepts a sign or a space where the grammar has
 * none (catalog #7); nothing allocates.
 * SPDX-License-Identifier: MIT
 */
#include "ftp_parse.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* ---- line assembly ------------------------------------------------------------------------ */

const char *ftp_line_status_text(ftp_line_status st)
{
    switch (st) {
    case FTP_LINE_OK:
        return "ok";
    case FTP_LINE_BARE_CR:
        return "bare CR inside a line";
    case FTP_LINE_BARE_LF:
        return "bare LF inside a line";
    case FTP_LINE_NUL:
        return "NUL byte inside a line";
    case FTP_LINE_CONTROL:
        return "control byte inside a line";
    case FTP_LINE_8BIT:
        return "8-bit byte inside a line";
    case FTP_LINE_TOO_LONG:
        return "line longer than 512 bytes";
    }
    return "bad line";
}

void ftp_lines_init(ftp_lines *l) { memset(l, 0, sizeof *l); }

bool ftp_lines_partial(const ftp_lines *l) { return l->len > 0 || l->cr || l->discarding; }

static void lines_reset(ftp_lines *l)
{
    l->len = 0;
    l->cr = false;
    l->error = FTP_LINE_OK;
}

/* Stores one content byte; on overflow reports the line as too long and starts discarding. */
static bool lines_store(ftp_lines *l, uint8_t b, ftp_line_cb cb, void *arg, size_t *count)
{
    if (l->len >= FTP_LINE_CONTENT_MAX) {
        l->buf[l->len] = '\0';
        cb(arg, FTP_LINE_TOO_LONG, l->buf, l->len);
        (*count)++;
        lines_reset(l);
        l->discarding = true;
        return false;
    }
    l->buf[l->len++] = (char)b;
    return true;
}

static void lines_mark(ftp_lines *l, ftp_line_status st)
{
    if (l->error == FTP_LINE_OK)
        l->error = st;
}

size_t ftp_lines_feed(ftp_lines *l, const uint8_t *p, size_t n, ftp_line_cb cb, void *arg)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = p[i];
        if (l->discarding) {
            /* Only CRLF ends the overlong line; nothing of it is kept. */
            if (l->cr && b == '\n') {
                l->discarding = false;
                lines_reset(l);
                continue;
            }
            l->cr = b == '\r';
            continue;
        }
        if (l->cr) {
            l->cr = false;
            if (b == '\n') {
                l->buf[l->len] = '\0';
                cb(arg, l->error, l->buf, l->len);
                count++;
                lines_reset(l);
                continue;
            }
            /* A CR that is not part of CRLF is content, and makes the line bad. */
            lines_mark(l, FTP_LINE_BARE_CR);
            if (!lines_store(l, '\r', cb, arg, &count)) {
                l->cr = b == '\r';
                continue;
            }
        }
        if (b == '\r') {
            l->cr = true;
            continue;
        }
        if (b == '\n')
            lines_mark(l, FTP_LINE_BARE_LF); /* CRLF is the only terminator (catalog #18) */
        else if (b == 0)
            lines_mark(l, FTP_LINE_NUL);
        else if (b >= 0x80)
            lines_mark(l, FTP_LINE_8BIT);
        else if ((b < 0x20 && b != '\t') || b == 0x7f)
            lines_mark(l, FTP_LINE_CONTROL);
        (void)lines_store(l, b, cb, arg, &count);
    }
    return count;
}

/* ---- commands ----------------------------------------------------------------------------- */

static bool is_alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool ftp_cmd_parse(const char *line, size_t len, ftp_cmd *out)
{
    size_t i = 0;
    memset(out, 0, sizeof *out);
    while (i < len && i < 4 && is_alpha(line[i])) {
        char c = line[i];
        out->verb[i] = (char)(c >= 'a' ? c - 'a' + 'A' : c);
        i++;
    }
    if (i < 3)
        return false;
    out->verb[i] = '\0';
    if (i == len)
        return true;
    if (line[i] != ' ')
        return false;
    out->arg = line + i + 1;
    out->arg_len = len - i - 1;
    return true;
}

/* ---- numbers ------------------------------------------------------------------------------ */

const char *ftp_perr_text(ftp_perr e)
{
    switch (e) {
    case FTP_P_OK:
        return "ok";
    case FTP_P_SYNTAX:
        return "syntax error";
    case FTP_P_RANGE:
        return "number out of range";
    case FTP_P_FAMILY:
        return "unknown network protocol";
    case FTP_P_ZONE:
        return "IPv6 zone id";
    }
    return "error";
}

/* Reads a decimal number of 1..maxd digits at s[*i] (bounded by len), leading zeros allowed
   only when lz (a lone "0" always is), and advances *i. The digit count is checked before the
   value grows, so the accumulator never exceeds 10^maxd. The caller range-checks. */
static ftp_perr read_num(const char *s, size_t len, size_t *i, unsigned maxd, bool lz, uint32_t *val)
{
    size_t start = *i;
    uint32_t v = 0;
    while (*i < len && is_digit(s[*i])) {
        if (*i - start >= maxd)
            return FTP_P_SYNTAX; /* too many digits: refused before they are converted */
        v = v * 10 + (uint32_t)(s[*i] - '0');
        (*i)++;
    }
    if (*i == start)
        return FTP_P_SYNTAX;
    if (!lz && s[start] == '0' && *i - start > 1)
        return FTP_P_SYNTAX;
    *val = v;
    return FTP_P_OK;
}

/* Six comma-separated numbers 0-255 at s[*i]. */
static ftp_perr read_six(const char *s, size_t len, size_t *i, bool lz, uint32_t v[6])
{
    for (int k = 0; k < 6; k++) {
        if (k > 0) {
            if (*i >= len || s[*i] != ',')
                return FTP_P_SYNTAX;
            (*i)++;
        }
        ftp_perr e = read_num(s, len, i, 3, lz, &v[k]);
        if (e != FTP_P_OK)
            return e;
        if (v[k] > 255)
            return FTP_P_RANGE;
    }
    return FTP_P_OK;
}

static void set_v4(struct sockaddr_storage *out, const uint32_t v[6])
{
    struct sockaddr_in *in = (struct sockaddr_in *)(void *)out;
    memset(out, 0, sizeof *out);
    in->sin_family = AF_INET;
    uint8_t *a = (uint8_t *)&in->sin_addr;
    for (int k = 0; k < 4; k++)
        a[k] = (uint8_t)v[k];
    in->sin_port = htons((uint16_t)(v[4] * 256 + v[5]));
}

ftp_perr ftp_parse_port(const char *arg, size_t len, struct sockaddr_storage *out)
{
    uint32_t v[6];
    size_t i = 0;
    if (arg == NULL)
        return FTP_P_SYNTAX;
    ftp_perr e = read_six(arg, len, &i, false, v);
    if (e != FTP_P_OK)
        return e;
    if (i != len)
        return FTP_P_SYNTAX; /* "4,1x", "4,1,7", trailing space */
    set_v4(out, v);
    return FTP_P_OK;
}

/* Strict dotted quad: four d{1,3} 0-255 without leading zeros (no octal look-alikes). */
static bool parse_quad(const char *s, size_t len, struct in_addr *out)
{
    size_t i = 0;
    uint8_t *a = (uint8_t *)out;
    for (int k = 0; k < 4; k++) {
        uint32_t v;
        if (k > 0) {
            if (i >= len || s[i] != '.')
                return false;
            i++;
        }
        if (read_num(s, len, &i, 3, false, &v) != FTP_P_OK || v > 255)
            return false;
        a[k] = (uint8_t)v;
    }
    return i == len;
}

/* A port of 1..5 digits, no leading zero, 1-65535. */
static ftp_perr read_port(const char *s, size_t len, size_t *i, uint16_t *port)
{
    uint32_t v;
    ftp_perr e = read_num(s, len, i, 5, false, &v);
    if (e != FTP_P_OK)
        return e;
    if (v == 0 || v > 65535)
        return FTP_P_RANGE;
    *port = (uint16_t)v;
    return FTP_P_OK;
}

static bool delim_ok(char d) { return d >= 33 && d <= 126 && !is_digit(d); }

ftp_perr ftp_parse_eprt(const char *arg, size_t len, struct sockaddr_storage *out, int *net_prt)
{
    size_t pos[4], n = 0;
    if (arg == NULL || len < 7)
        return FTP_P_SYNTAX;
    char d = arg[0];
    if (!delim_ok(d))
        return FTP_P_SYNTAX;
    for (size_t i = 0; i < len; i++) {
        if (arg[i] == d) {
            if (n == 4)
                return FTP_P_SYNTAX;
            pos[n++] = i;
        }
    }
    if (n != 4 || pos[0] != 0 || pos[3] != len - 1)
        return FTP_P_SYNTAX;
    const char *np = arg + pos[0] + 1, *ad = arg + pos[1] + 1, *pt = arg + pos[2] + 1;
    size_t npl = pos[1] - pos[0] - 1, adl = pos[2] - pos[1] - 1, ptl = pos[3] - pos[2] - 1;
    int family;
    if (npl == 1 && np[0] == '1')
        family = 1;
    else if (npl == 1 && np[0] == '2')
        family = 2;
    else if (npl >= 1 && npl <= 3 && is_digit(np[0]) && (npl < 2 || is_digit(np[1])) && (npl < 3 || is_digit(np[2])))
        return FTP_P_FAMILY;
    else
        return FTP_P_SYNTAX;
    uint16_t port;
    size_t i = 0;
    ftp_perr e = read_port(pt, ptl, &i, &port);
    if (e != FTP_P_OK)
        return e;
    if (i != ptl)
        return FTP_P_SYNTAX;
    memset(out, 0, sizeof *out);
    if (family == 1) {
        struct sockaddr_in *in = (struct sockaddr_in *)(void *)out;
        if (!parse_quad(ad, adl, &in->sin_addr))
            return FTP_P_SYNTAX;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
    } else {
        char text[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        if (memchr(ad, '%', adl) != NULL)
            return FTP_P_ZONE;
        if (adl == 0 || adl >= sizeof text)
            return FTP_P_SYNTAX;
        memcpy(text, ad, adl);
        text[adl] = '\0';
        if (inet_pton(AF_INET6, text, &a6) != 1)
            return FTP_P_SYNTAX;
        if (IN6_IS_ADDR_V4MAPPED(&a6)) {
            /* Canonical form first, so the bounce and gateway checks see the real address. */
            struct sockaddr_in *in = (struct sockaddr_in *)(void *)out;
            in->sin_family = AF_INET;
            memcpy(&in->sin_addr, &a6.s6_addr[12], 4);
            in->sin_port = htons(port);
        } else {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)out;
            in6->sin6_family = AF_INET6;
            in6->sin6_addr = a6;
            in6->sin6_port = htons(port);
        }
    }
    *net_prt = family;
    return FTP_P_OK;
}

ftp_perr ftp_parse_227(const char *line, size_t len, struct sockaddr_storage *out)
{
    uint32_t v[6];
    size_t i = 3;
    if (line == NULL || len < 4)
        return FTP_P_SYNTAX;
    while (i < len && !is_digit(line[i]))
        i++;
    if (i == len)
        return FTP_P_SYNTAX;
    ftp_perr e = read_six(line, len, &i, true, v);
    if (e != FTP_P_OK)
        return e;
    if (i < len && (line[i] == ',' || is_digit(line[i])))
        return FTP_P_SYNTAX; /* a seventh number */
    set_v4(out, v);
    return FTP_P_OK;
}

ftp_perr ftp_parse_229(const char *line, size_t len, uint16_t *port)
{
    if (line == NULL || len < 4)
        return FTP_P_SYNTAX;
    const char *open = memchr(line + 3, '(', len - 3);
    if (open == NULL)
        return FTP_P_SYNTAX;
    size_t i = (size_t)(open - line) + 1;
    if (len - i < 6)
        return FTP_P_SYNTAX;
    char d = line[i];
    if (!delim_ok(d) || line[i + 1] != d || line[i + 2] != d)
        return FTP_P_SYNTAX; /* net-prt and address must be blank */
    i += 3;
    ftp_perr e = read_port(line, len, &i, port);
    if (e != FTP_P_OK)
        return e;
    if (i + 1 >= len || line[i] != d || line[i + 1] != ')')
        return FTP_P_SYNTAX;
    i += 2;
    if (memchr(line + i, '(', len - i) != NULL)
        return FTP_P_SYNTAX; /* a second group: which one would the client use? */
    return FTP_P_OK;
}

/* ---- replies ------------------------------------------------------------------------------ */

static bool reply_code(const char *line, size_t len, int *code)
{
    if (len < 3 || line[0] < '1' || line[0] > '5' || !is_digit(line[1]) || !is_digit(line[2]))
        return false;
    *code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    return true;
}

ftp_reply_kind ftp_replies_line(ftp_replies *r, const char *line, size_t len, int *code)
{
    int c;
    if (r->multi) {
        *code = r->code;
        /* Only "same code, then a space" ends it (RFC 959 4.2); anything else is text. */
        if (len >= 4 && reply_code(line, len, &c) && c == r->code && line[3] == ' ') {
            r->multi = false;
            return FTP_R_FINAL;
        }
        return FTP_R_MULTI_TEXT;
    }
    if (!reply_code(line, len, &c))
        return FTP_R_BAD;
    if (len > 3 && line[3] != ' ' && line[3] != '-')
        return FTP_R_BAD;
    *code = c;
    if (len > 3 && line[3] == '-') {
        r->multi = true;
        r->code = c;
        return FTP_R_MULTI_START;
    }
    return FTP_R_FINAL;
}

/* ---- address policy --------------------------------------------------------------------- */

bool ftp_same_ip(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a == NULL || b == NULL || a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)(const void *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)(const void *)b)->sin_addr.s_addr;
    if (a->sa_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)(const void *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)(const void *)b)->sin6_addr, 16) == 0;
    return false;
}

const char *ftp_check_port_number(uint16_t port)
{
    if (port == 0)
        return "port 0";
    if (port < 1024)
        return "a privileged port";
    return NULL;
}

const char *ftp_check_address(const struct sockaddr *sa)
{
    if (sa == NULL)
        return "no address";
    if (sa->sa_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr);
        if (a == 0)
            return "the unspecified address";
        if (a == 0xFFFFFFFFu)
            return "the broadcast address";
        if ((a >> 28) == 0xE)
            return "a multicast address";
        return NULL;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_UNSPECIFIED(a6))
            return "the unspecified address";
        if (IN6_IS_ADDR_MULTICAST(a6))
            return "a multicast address";
        return NULL;
    }
    return "not an IP address";
}

const char *ftp_check_active(const struct sockaddr *addr, const struct sockaddr *client)
{
    const char *why;
    if ((why = ftp_check_address(addr)) != NULL)
        return why;
    if (!ftp_same_ip(addr, client))
        return "bounce to a third party";
    uint16_t port = ntohs(addr->sa_family == AF_INET ? ((const struct sockaddr_in *)(const void *)addr)->sin_port
                                                     : ((const struct sockaddr_in6 *)(const void *)addr)->sin6_port);
    return ftp_check_port_number(port);
}

/* ---- formatters --------------------------------------------------------------------------- */

static size_t fmt_done(int n, size_t cap) { return n < 0 || (size_t)n >= cap ? 0 : (size_t)n; }

size_t ftp_fmt_port(char *out, size_t cap, const struct sockaddr *sa)
{
    if (sa == NULL || sa->sa_family != AF_INET)
        return 0;
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
    const uint8_t *a = (const uint8_t *)&in->sin_addr;
    uint16_t p = ntohs(in->sin_port);
    return fmt_done(snprintf(out, cap, "PORT %u,%u,%u,%u,%u,%u\r\n", a[0], a[1], a[2], a[3], p >> 8, p & 0xff), cap);
}

size_t ftp_fmt_eprt(char *out, size_t cap, const struct sockaddr *sa)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa != NULL && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        return fmt_done(snprintf(out, cap, "EPRT |1|%s|%u|\r\n", ip, ntohs(in->sin_port)), cap);
    }
    if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        return fmt_done(snprintf(out, cap, "EPRT |2|%s|%u|\r\n", ip, ntohs(in6->sin6_port)), cap);
    }
    return 0;
}

size_t ftp_fmt_227(char *out, size_t cap, const struct sockaddr *sa)
{
    if (sa == NULL || sa->sa_family != AF_INET)
        return 0;
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
    const uint8_t *a = (const uint8_t *)&in->sin_addr;
    uint16_t p = ntohs(in->sin_port);
    return fmt_done(snprintf(out, cap, "227 Entering Passive Mode (%u,%u,%u,%u,%u,%u).\r\n", a[0], a[1], a[2], a[3],
                             p >> 8, p & 0xff),
                    cap);
}

size_t ftp_fmt_229(char *out, size_t cap, uint16_t port)
{
    if (port == 0)
        return 0;
    return fmt_done(snprintf(out, cap, "229 Entering Extended Passive Mode (|||%u|).\r\n", port), cap);
}
