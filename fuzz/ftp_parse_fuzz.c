/*
 * fwx fuzzing - the FTP parser (plugins/ftp/ftp_parse.c), libFuzzer target.
 *
 * Input framing (Suricata style: its parser fuzzers frame input the same way): the input is a sequence
 * of chunks separated by the 4-byte marker 01 D5 CA 7A. Each chunk's first byte picks the
 * direction (bit 0: 0 = client -> server, 1 = server -> client); the rest is the bytes that
 * direction delivers in one read. So the fuzzer mutates segmentation and direction changes, as
 * the filter sees them. A chunk without a direction byte is skipped.
 *
 * Per direction, four views of the same stream must agree line for line (status and content),
 * and on whether a partial line is left at the end:
 *   A. the assembler fed chunk by chunk (the real segmentation);
 *   B. a second assembler fed the concatenation of the direction's chunks whole;
 *   C. a third assembler fed the concatenation one byte at a time (every split point at once);
 *   R. a reference model written from ftp_parse.h alone: lines end at the first CRLF, content
 *      over FTP_LINE_CONTENT_MAX bytes is TOO_LONG (first 510 bytes reported), otherwise the
 *      first bad byte decides the status.
 * Every line A reports must also satisfy: len <= FTP_LINE_CONTENT_MAX; an OK line holds no CR,
 * LF, NUL, control (except HT) or 8-bit byte.
 *
 * Every line (any status: the parsers take (pointer, length) and must be safe on any bytes) goes
 * through ftp_cmd_parse, ftp_parse_port, ftp_parse_eprt, ftp_parse_227, ftp_parse_229 and, for
 * the server direction, ftp_replies_line. Invariants:
 *   - PORT/227 accepted => AF_INET; EPRT accepted => net_prt 1 or 2, AF_INET for 1 and for
 *     v4-mapped 2, AF_INET6 otherwise, port 1..65535; 229 accepted => port 1..65535;
 *   - PORT, 227, 229 accept exactly what independent reference parsers of their grammar accept,
 *     with the same values; EPRT's accepted inputs obey the RFC 2428 shape;
 *   - format then parse gives back the same address (PORT, 227, EPRT, 229), a formatted PORT is
 *     byte-identical to a canonical accepted argument, and every formatted line is one clean
 *     line of the assembler; formatting into every too-small buffer writes nothing past it and
 *     returns 0;
 *   - ftp_check_active() never accepts what is not the client's own address with port >= 1024;
 *   - reply classification: codes 100..599, kinds follow RFC 959 4.2 (reference model).
 * A violation is __builtin_trap().
 * SPDX-License-Identifier: MIT
 */
#include "ftp_parse.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(x)                                                                                  \
    do {                                                                                          \
        if (!(x))                                                                                 \
            __builtin_trap();                                                                     \
    } while (0)

static const uint8_t MARKER[4] = {0x01, 0xD5, 0xCA, 0x7A};

/* ---- recorded line sequences ------------------------------------------------------------- */

typedef struct rec_line {
    ftp_line_status st;
    size_t off, len; /* content in the record's byte store */
} rec_line;

typedef struct record {
    rec_line *lines;
    size_t n, cap;
    uint8_t *bytes;
    size_t nb, capb;
} record;

static void rec_add(record *r, ftp_line_status st, const char *p, size_t len)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->lines = realloc(r->lines, r->cap * sizeof *r->lines);
        CHECK(r->lines != NULL);
    }
    if (r->nb + len > r->capb) {
        while (r->nb + len > r->capb)
            r->capb = r->capb ? r->capb * 2 : 1024;
        r->bytes = realloc(r->bytes, r->capb);
        CHECK(r->bytes != NULL);
    }
    if (len)
        memcpy(r->bytes + r->nb, p, len);
    r->lines[r->n].st = st;
    r->lines[r->n].off = r->nb;
    r->lines[r->n].len = len;
    r->n++;
    r->nb += len;
}

static void rec_free(record *r)
{
    free(r->lines);
    free(r->bytes);
    memset(r, 0, sizeof *r);
}

static void rec_same(const record *a, const record *b)
{
    CHECK(a->n == b->n);
    for (size_t i = 0; i < a->n; i++) {
        CHECK(a->lines[i].st == b->lines[i].st);
        CHECK(a->lines[i].len == b->lines[i].len);
        CHECK(a->lines[i].len == 0 ||
              memcmp(a->bytes + a->lines[i].off, b->bytes + b->lines[i].off, a->lines[i].len) == 0);
    }
}

static void on_record(void *arg, ftp_line_status st, const char *line, size_t len)
{
    rec_add(arg, st, line, len);
}

/* ---- reference line model ---------------------------------------------------------------- */

static ftp_line_status classify(uint8_t b)
{
    if (b == '\r')
        return FTP_LINE_BARE_CR;
    if (b == '\n')
        return FTP_LINE_BARE_LF;
    if (b == 0)
        return FTP_LINE_NUL;
    if (b >= 0x80)
        return FTP_LINE_8BIT;
    if ((b < 0x20 && b != '\t') || b == 0x7f)
        return FTP_LINE_CONTROL;
    return FTP_LINE_OK;
}

static void ref_line(record *r, const uint8_t *p, size_t len)
{
    if (len > FTP_LINE_CONTENT_MAX) {
        rec_add(r, FTP_LINE_TOO_LONG, (const char *)p, FTP_LINE_CONTENT_MAX);
        return;
    }
    ftp_line_status st = FTP_LINE_OK;
    for (size_t i = 0; i < len && st == FTP_LINE_OK; i++)
        st = classify(p[i]);
    rec_add(r, st, (const char *)p, len);
}

/* Returns whether a partial line is left. */
static bool ref_lines(record *r, const uint8_t *p, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] == '\r' && p[i + 1] == '\n') {
            ref_line(r, p + start, i - start);
            start = i + 2;
            i++;
        }
    }
    size_t rest = n - start;
    /* An unfinished line is reported only once it is over the limit; a final CR may still
       become a CRLF, so it does not count. */
    size_t eff = rest > 0 && p[n - 1] == '\r' ? rest - 1 : rest;
    if (eff > FTP_LINE_CONTENT_MAX)
        rec_add(r, FTP_LINE_TOO_LONG, (const char *)p + start, FTP_LINE_CONTENT_MAX);
    return rest > 0;
}

/* ---- reference parsers ------------------------------------------------------------------- */

static bool dig(char c) { return c >= '0' && c <= '9'; }

/* d{1,maxd} at s[*i]; lz: leading zeros allowed. */
static bool ref_num(const char *s, size_t len, size_t *i, size_t maxd, bool lz, unsigned long *v)
{
    size_t j = *i;
    while (j < len && dig(s[j]))
        j++;
    size_t nd = j - *i;
    if (nd == 0 || nd > maxd)
        return false;
    if (!lz && nd > 1 && s[*i] == '0')
        return false;
    unsigned long x = 0;
    for (size_t k = *i; k < j; k++)
        x = x * 10 + (unsigned long)(s[k] - '0');
    *v = x;
    *i = j;
    return true;
}

static bool ref_six(const char *s, size_t len, size_t *i, bool lz, unsigned long v[6])
{
    for (int k = 0; k < 6; k++) {
        if (k > 0) {
            if (*i >= len || s[*i] != ',')
                return false;
            (*i)++;
        }
        if (!ref_num(s, len, i, 3, lz, &v[k]) || v[k] > 255)
            return false;
    }
    return true;
}

static bool ref_port(const char *s, size_t len, unsigned long v[6])
{
    size_t i = 0;
    return s != NULL && ref_six(s, len, &i, false, v) && i == len;
}

static bool ref_227(const char *s, size_t len, unsigned long v[6])
{
    if (s == NULL || len < 4)
        return false;
    size_t i = 3;
    while (i < len && !dig(s[i]))
        i++;
    if (i == len || !ref_six(s, len, &i, true, v))
        return false;
    return i == len || (s[i] != ',' && !dig(s[i]));
}

static bool ref_delim(char d) { return d >= 33 && d <= 126 && !dig(d); }

static bool ref_229(const char *s, size_t len, unsigned long *port)
{
    if (s == NULL || len < 4)
        return false;
    size_t i = 3;
    while (i < len && s[i] != '(')
        i++;
    if (i == len)
        return false;
    i++;
    if (len - i < 6)
        return false;
    char d = s[i];
    if (!ref_delim(d) || s[i + 1] != d || s[i + 2] != d)
        return false;
    i += 3;
    if (!ref_num(s, len, &i, 5, false, port) || *port == 0 || *port > 65535)
        return false;
    if (i + 1 >= len || s[i] != d || s[i + 1] != ')')
        return false;
    for (i += 2; i < len; i++)
        if (s[i] == '(')
            return false;
    return true;
}

static bool same_sa(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_addr.s_addr == y->sin_addr.s_addr && x->sin_port == y->sin_port;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0 && x->sin6_port == y->sin6_port;
    }
    return false;
}

static uint16_t sa_port(const struct sockaddr_storage *a)
{
    return ntohs(a->ss_family == AF_INET ? ((const struct sockaddr_in *)(const void *)a)->sin_port
                                         : ((const struct sockaddr_in6 *)(const void *)a)->sin6_port);
}

/* A formatted line must be exactly one clean line of the assembler, with the same content. */
static void check_clean_line(const char *out, size_t n)
{
    CHECK(n >= 2 && n <= FTP_LINE_MAX && out[n - 2] == '\r' && out[n - 1] == '\n');
    CHECK(strlen(out) == n);
    record r = {0};
    ftp_lines l;
    ftp_lines_init(&l);
    CHECK(ftp_lines_feed(&l, (const uint8_t *)out, n, on_record, &r) == 1);
    CHECK(!ftp_lines_partial(&l));
    CHECK(r.n == 1 && r.lines[0].st == FTP_LINE_OK && r.lines[0].len == n - 2);
    CHECK(memcmp(r.bytes, out, n - 2) == 0);
    rec_free(&r);
}

typedef size_t (*fmt_sa_fn)(char *, size_t, const struct sockaddr *);

/* Every cap below the needed size returns 0 and writes nothing past cap (heap buffers of the
   exact size, so ASan sees any overrun); cap = need + 1 gives the same line. */
static void check_caps(fmt_sa_fn f, const struct sockaddr *sa, const char *want, size_t n, unsigned salt)
{
    size_t caps[3] = {0, salt % (n + 1), n};
    for (int k = 0; k < 3; k++) {
        size_t cap = caps[k];
        char *b = malloc(cap ? cap : 1);
        CHECK(b != NULL);
        CHECK(f(b, cap, sa) == 0);
        free(b);
    }
    char *b = malloc(n + 1);
    CHECK(b != NULL);
    CHECK(f(b, n + 1, sa) == n && memcmp(b, want, n + 1) == 0);
    free(b);
}

static struct sockaddr_storage client_v4(void)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in = (struct sockaddr_in *)(void *)&ss;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(0x0A000008); /* 10.0.0.8 */
    return ss;
}

static void check_policy(const struct sockaddr_storage *a)
{
    struct sockaddr_storage client = client_v4();
    const struct sockaddr *sa = (const struct sockaddr *)a;
    CHECK(ftp_same_ip(sa, sa));
    const char *why = ftp_check_active(sa, (const struct sockaddr *)&client);
    if (why == NULL) {
        CHECK(ftp_same_ip(sa, (const struct sockaddr *)&client));
        CHECK(ftp_check_address(sa) == NULL);
        CHECK(sa_port(a) >= 1024);
    }
    /* The address as its own client: only the port and group checks remain. */
    why = ftp_check_active(sa, sa);
    CHECK((why == NULL) == (ftp_check_address(sa) == NULL && ftp_check_port_number(sa_port(a)) == NULL));
}

/* ---- per line ---------------------------------------------------------------------------- */

/* The six numbers of a PORT argument or a 227 reply (text, len), parsed into *a by parse: the
   parser and the reference (ref) agree, and an address parsed is the reference's numbers and
   passes or fails the policy checks consistently. True when it parsed, for the caller's
   further checks. */
static bool check_six(ftp_perr (*parse)(const char *, size_t, struct sockaddr_storage *),
                      bool (*ref)(const char *, size_t, unsigned long[6]), const char *text, size_t len,
                      struct sockaddr_storage *a)
{
    unsigned long v[6];
    memset(a, 0xA5, sizeof *a);
    ftp_perr e = parse(text, len, a);
    CHECK((e == FTP_P_OK) == ref(text, len, v));
    if (e != FTP_P_OK) {
        CHECK(e == FTP_P_SYNTAX || e == FTP_P_RANGE);
        return false;
    }
    CHECK(a->ss_family == AF_INET);
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)a;
    const uint8_t *q = (const uint8_t *)&in->sin_addr;
    for (int k = 0; k < 4; k++)
        CHECK(q[k] == v[k]);
    CHECK(ntohs(in->sin_port) == v[4] * 256 + v[5]);
    check_policy(a);
    return true;
}

/* An address parsed from six numbers, written as a 227 reply into out: a clean line that parses
   back to the same address. Its length. */
static size_t check_227_back(const struct sockaddr_storage *a, char *out, size_t cap)
{
    struct sockaddr_storage b;
    size_t n = ftp_fmt_227(out, cap, (const struct sockaddr *)a);
    CHECK(n > 0);
    check_clean_line(out, n);
    CHECK(ftp_parse_227(out, n - 2, &b) == FTP_P_OK && same_sa(a, &b));
    return n;
}

static void check_port_arg(const char *arg, size_t len, unsigned salt)
{
    struct sockaddr_storage a, b;
    if (!check_six(ftp_parse_port, ref_port, arg, len, &a))
        return;
    /* Format, and parse back: the same address; canonical input, so the same bytes. */
    char out[128];
    size_t n = ftp_fmt_port(out, sizeof out, (const struct sockaddr *)&a);
    CHECK(n > 7 && memcmp(out, "PORT ", 5) == 0);
    check_clean_line(out, n);
    CHECK(n - 7 == len && memcmp(out + 5, arg, len) == 0);
    CHECK(ftp_parse_port(out + 5, n - 7, &b) == FTP_P_OK && same_sa(&a, &b));
    check_caps(ftp_fmt_port, (const struct sockaddr *)&a, out, n, salt);
    /* The same address as a 227 reply. */
    n = check_227_back(&a, out, sizeof out);
    check_caps(ftp_fmt_227, (const struct sockaddr *)&a, out, n, salt);
    /* And as EPRT |1|. */
    n = ftp_fmt_eprt(out, sizeof out, (const struct sockaddr *)&a);
    CHECK(n > 7 && memcmp(out, "EPRT ", 5) == 0);
    check_clean_line(out, n);
    int np = 0;
    ftp_perr pe = ftp_parse_eprt(out + 5, n - 7, &b, &np);
    if (sa_port(&a) == 0)
        CHECK(pe == FTP_P_RANGE); /* EPRT has no port 0 */
    else
        CHECK(pe == FTP_P_OK && np == 1 && same_sa(&a, &b));
}

static void check_eprt_arg(const char *arg, size_t len, unsigned salt)
{
    struct sockaddr_storage a, b;
    int np = -1;
    memset(&a, 0xA5, sizeof a);
    ftp_perr e = ftp_parse_eprt(arg, len, &a, &np);
    CHECK(e == FTP_P_OK || e == FTP_P_SYNTAX || e == FTP_P_RANGE || e == FTP_P_FAMILY || e == FTP_P_ZONE);
    if (e != FTP_P_OK)
        return;
    /* RFC 2428 shape: <d>1|2<d>addr<d>port<d>, d 33-126 not a digit, exactly 4 times. */
    CHECK(arg != NULL && len >= 7);
    char d = arg[0];
    CHECK(ref_delim(d) && arg[len - 1] == d);
    size_t nd = 0, pos[4] = {0};
    for (size_t i = 0; i < len; i++)
        if (arg[i] == d) {
            CHECK(nd < 4);
            pos[nd++] = i;
        }
    CHECK(nd == 4 && pos[1] == 2 && (arg[1] == '1' || arg[1] == '2'));
    CHECK(np == arg[1] - '0');
    CHECK(memchr(arg, '%', len) == NULL);
    size_t i = pos[2] + 1;
    unsigned long port;
    CHECK(ref_num(arg, len, &i, 5, false, &port) && i == pos[3] && port >= 1 && port <= 65535);
    CHECK(sa_port(&a) == port);
    if (np == 1) {
        CHECK(a.ss_family == AF_INET);
        /* Strict dotted quad, checked again here. */
        size_t j = pos[1] + 1;
        unsigned long q[4];
        for (int k = 0; k < 4; k++) {
            if (k > 0) {
                CHECK(arg[j] == '.');
                j++;
            }
            CHECK(ref_num(arg, pos[2], &j, 3, false, &q[k]) && q[k] <= 255);
        }
        CHECK(j == pos[2]);
        const uint8_t *ip = (const uint8_t *)&((const struct sockaddr_in *)(const void *)&a)->sin_addr;
        for (int k = 0; k < 4; k++)
            CHECK(ip[k] == q[k]);
    } else {
        CHECK(a.ss_family == AF_INET || a.ss_family == AF_INET6);
        char text[INET6_ADDRSTRLEN];
        size_t al = pos[2] - pos[1] - 1;
        CHECK(al > 0 && al < sizeof text);
        memcpy(text, arg + pos[1] + 1, al);
        text[al] = '\0';
        struct in6_addr a6;
        CHECK(inet_pton(AF_INET6, text, &a6) == 1);
        if (IN6_IS_ADDR_V4MAPPED(&a6)) {
            CHECK(a.ss_family == AF_INET);
            CHECK(memcmp(&((const struct sockaddr_in *)(const void *)&a)->sin_addr, &a6.s6_addr[12], 4) == 0);
        } else {
            CHECK(a.ss_family == AF_INET6);
            CHECK(memcmp(&((const struct sockaddr_in6 *)(const void *)&a)->sin6_addr, &a6, 16) == 0);
        }
    }
    check_policy(&a);
    /* Format and parse back. */
    char out[160];
    size_t n = ftp_fmt_eprt(out, sizeof out, (const struct sockaddr *)&a);
    CHECK(n > 7 && memcmp(out, "EPRT ", 5) == 0);
    check_clean_line(out, n);
    int np2 = 0;
    CHECK(ftp_parse_eprt(out + 5, n - 7, &b, &np2) == FTP_P_OK && same_sa(&a, &b));
    CHECK(np2 == (a.ss_family == AF_INET ? 1 : 2));
    check_caps(ftp_fmt_eprt, (const struct sockaddr *)&a, out, n, salt);
    if (a.ss_family == AF_INET) {
        n = ftp_fmt_port(out, sizeof out, (const struct sockaddr *)&a);
        CHECK(n > 7);
        CHECK(ftp_parse_port(out + 5, n - 7, &b) == FTP_P_OK && same_sa(&a, &b));
    } else {
        CHECK(ftp_fmt_port(out, sizeof out, (const struct sockaddr *)&a) == 0);
        CHECK(ftp_fmt_227(out, sizeof out, (const struct sockaddr *)&a) == 0);
    }
}

static void check_227(const char *line, size_t len, unsigned salt)
{
    struct sockaddr_storage a, b;
    if (!check_six(ftp_parse_227, ref_227, line, len, &a))
        return;
    char out[128];
    size_t n = check_227_back(&a, out, sizeof out);
    n = ftp_fmt_port(out, sizeof out, (const struct sockaddr *)&a);
    CHECK(n > 7 && ftp_parse_port(out + 5, n - 7, &b) == FTP_P_OK && same_sa(&a, &b));
    (void)salt;
}

static void check_229(const char *line, size_t len, unsigned salt)
{
    uint16_t port = 0;
    unsigned long rp = 0;
    ftp_perr e = ftp_parse_229(line, len, &port);
    bool ref = ref_229(line, len, &rp);
    CHECK((e == FTP_P_OK) == ref);
    if (e != FTP_P_OK) {
        CHECK(e == FTP_P_SYNTAX || e == FTP_P_RANGE);
        return;
    }
    CHECK(port >= 1 && port == rp);
    char out[128];
    size_t n = ftp_fmt_229(out, sizeof out, port);
    CHECK(n > 0);
    check_clean_line(out, n);
    uint16_t p2 = 0;
    CHECK(ftp_parse_229(out, n - 2, &p2) == FTP_P_OK && p2 == port);
    size_t cap = salt % (n + 1);
    char *b = malloc(cap ? cap : 1);
    CHECK(b != NULL);
    CHECK(ftp_fmt_229(b, cap, port) == 0);
    free(b);
}

/* Formatters on an address made of raw line bytes (any family value, any port). */
static void check_raw_formatters(const char *line, size_t len)
{
    struct sockaddr_storage a;
    memset(&a, 0, sizeof a);
    memcpy(&a, line, len < sizeof a ? len : sizeof a);
    char out[160];
    fmt_sa_fn fns[3] = {ftp_fmt_port, ftp_fmt_eprt, ftp_fmt_227};
    for (int k = 0; k < 3; k++) {
        size_t n = fns[k](out, sizeof out, (const struct sockaddr *)&a);
        if (a.ss_family != AF_INET && !(k == 1 && a.ss_family == AF_INET6))
            CHECK(n == 0);
        else
            check_clean_line(out, n);
    }
    (void)ftp_check_address((const struct sockaddr *)&a);
    (void)ftp_same_ip((const struct sockaddr *)&a, (const struct sockaddr *)&a);
}

/* Reference model of ftp_replies_line (RFC 959 4.2 as ftp_parse.h states it). */
typedef struct ref_replies {
    bool multi;
    int code;
} ref_replies;

static bool ref_code(const char *s, size_t len, int *code)
{
    if (len < 3 || s[0] < '1' || s[0] > '5' || !dig(s[1]) || !dig(s[2]))
        return false;
    *code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    return true;
}

static ftp_reply_kind ref_reply(ref_replies *r, const char *s, size_t len, int *code)
{
    int c;
    if (r->multi) {
        *code = r->code;
        if (len >= 4 && ref_code(s, len, &c) && c == r->code && s[3] == ' ') {
            r->multi = false;
            return FTP_R_FINAL;
        }
        return FTP_R_MULTI_TEXT;
    }
    if (!ref_code(s, len, &c) || (len > 3 && s[3] != ' ' && s[3] != '-'))
        return FTP_R_BAD;
    *code = c;
    if (len > 3 && s[3] == '-') {
        r->multi = true;
        r->code = c;
        return FTP_R_MULTI_START;
    }
    return FTP_R_FINAL;
}

typedef struct dir_ctx {
    int dir; /* 0 client, 1 server */
    ftp_replies replies;
    ref_replies ref;
    record rec;
    unsigned salt;
} dir_ctx;

static void on_line(void *arg, ftp_line_status st, const char *line, size_t len)
{
    dir_ctx *d = arg;
    rec_add(&d->rec, st, line, len);
    CHECK(len <= FTP_LINE_CONTENT_MAX);
    CHECK(st >= FTP_LINE_OK && st <= FTP_LINE_TOO_LONG);
    CHECK(ftp_line_status_text(st) != NULL);
    if (st == FTP_LINE_OK)
        for (size_t i = 0; i < len; i++)
            CHECK(classify((uint8_t)line[i]) == FTP_LINE_OK);
    d->salt = d->salt * 31u + (unsigned)len;

    /* Commands. */
    ftp_cmd cmd;
    if (ftp_cmd_parse(line, len, &cmd)) {
        size_t vl = strlen(cmd.verb);
        CHECK(vl == 3 || vl == 4);
        for (size_t i = 0; i < vl; i++)
            CHECK(cmd.verb[i] >= 'A' && cmd.verb[i] <= 'Z');
        if (cmd.arg != NULL) {
            CHECK(cmd.arg == line + vl + 1 && line[vl] == ' ' && cmd.arg_len == len - vl - 1);
        } else {
            CHECK(len == vl && cmd.arg_len == 0);
        }
        check_port_arg(cmd.arg, cmd.arg_len, d->salt);
        check_eprt_arg(cmd.arg, cmd.arg_len, d->salt);
    }
    /* The argument parsers on the whole line too (they must be safe on any bytes). */
    check_port_arg(line, len, d->salt);
    check_eprt_arg(line, len, d->salt);
    check_227(line, len, d->salt);
    check_229(line, len, d->salt);
    check_raw_formatters(line, len);

    /* Replies, on the server's lines that the filter would classify (clean ones). */
    if (d->dir == 1 && st == FTP_LINE_OK) {
        int code = -1, rcode = -1;
        ftp_reply_kind k = ftp_replies_line(&d->replies, line, len, &code);
        ftp_reply_kind rk = ref_reply(&d->ref, line, len, &rcode);
        CHECK(k == rk);
        CHECK(d->replies.multi == d->ref.multi);
        if (k != FTP_R_BAD)
            CHECK(code == rcode && code >= 100 && code <= 599);
    }
}

/* ---- the target ---------------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ftp_lines asm_[2];
    dir_ctx ctx[2];
    uint8_t *cat[2];
    size_t catn[2] = {0, 0};
    for (int d = 0; d < 2; d++) {
        ftp_lines_init(&asm_[d]);
        memset(&ctx[d], 0, sizeof ctx[d]);
        ctx[d].dir = d;
        cat[d] = malloc(size + 1);
        CHECK(cat[d] != NULL);
    }

    /* A: chunk by chunk, directions interleaved as the framing says. */
    size_t at = 0;
    while (at <= size) {
        const uint8_t *end = NULL;
        for (size_t i = at; i + 4 <= size; i++)
            if (memcmp(data + i, MARKER, 4) == 0) {
                end = data + i;
                break;
            }
        size_t clen = end ? (size_t)(end - (data + at)) : size - at;
        if (clen > 0) {
            int d = data[at] & 1;
            const uint8_t *p = data + at + 1;
            size_t n = clen - 1;
            size_t before = ctx[d].rec.n;
            size_t got = ftp_lines_feed(&asm_[d], p, n, on_line, &ctx[d]);
            CHECK(got == ctx[d].rec.n - before);
            if (n)
                memcpy(cat[d] + catn[d], p, n);
            catn[d] += n;
        }
        if (end == NULL)
            break;
        at = (size_t)(end - data) + 4;
    }

    for (int d = 0; d < 2; d++) {
        /* B: whole. */
        record whole = {0}, bytewise = {0}, ref = {0};
        ftp_lines l;
        ftp_lines_init(&l);
        CHECK(ftp_lines_feed(&l, cat[d], catn[d], on_record, &whole) == whole.n);
        bool partial_b = ftp_lines_partial(&l);
        /* C: one byte at a time. */
        ftp_lines_init(&l);
        for (size_t i = 0; i < catn[d]; i++)
            ftp_lines_feed(&l, cat[d] + i, 1, on_record, &bytewise);
        bool partial_c = ftp_lines_partial(&l);
        /* R: the reference. */
        bool partial_r = ref_lines(&ref, cat[d], catn[d]);

        rec_same(&ctx[d].rec, &whole);
        rec_same(&whole, &bytewise);
        rec_same(&whole, &ref);
        CHECK(partial_b == ftp_lines_partial(&asm_[d]));
        CHECK(partial_b == partial_c);
        CHECK(partial_b == partial_r);
        CHECK(asm_[d].len <= FTP_LINE_CONTENT_MAX);

        rec_free(&whole);
        rec_free(&bytewise);
        rec_free(&ref);
        rec_free(&ctx[d].rec);
        free(cat[d]);
    }
    return 0;
}
