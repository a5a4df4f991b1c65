/*
 * fwx fuzzing - the SOCKS5 wire format (lib/backends/proxy/socks_wire.c), libFuzzer target.
 * The parser is pure, so this target runs it alone: no model, no libuv, no core.
 *
 * Input framing (as fuzz/ftp_parse_fuzz.c): chunks separated by 01 D5 CA 7A.
 *   Chunk 0 is the configuration: byte 0 bit 0 set: credentials are configured (the greeting
 *   is followed by an RFC 1929 login); the rest of chunk 0 is one UDP ASSOCIATE datagram.
 *   Every later chunk is one read of the client, appended to a buffer of 600 bytes as socks.c
 *   does (a read that would fill it ends the run, as socks.c closes then).
 *
 * The reads are run as socks.c runs them: after each read the buffer is parsed as the message
 * the negotiation expects (greeting, then the login if configured, then the request), a
 * complete greeting or login is consumed and the next message parsed, a request ends the run.
 *
 * Invariants (a violation is __builtin_trap(); ASan/UBSan report memory errors):
 *   - split anywhere: each message's verdict (status, error, bytes used, values) is the same
 *     whether the stream arrives in the fuzzer's reads, one byte at a time or all at once; the
 *     one difference the protocol makes is a request with more bytes after it in the same
 *     read, refused as FWX__SOCKS_E_TRAILING, where a split after the request gives DONE;
 *   - every prefix of a message is NEED_MORE until the verdict, then the verdict;
 *   - NEED_MORE means a valid message can follow: extending the bytes with a byte that keeps
 *     it NEED_MORE reaches DONE, within the message's FWX__SOCKS_*_MAX (bounded);
 *   - DONE: the message re-encodes from the parsed values to the input byte for byte (the
 *     parser neither drops nor invents bytes), and its values obey RFC 1928/1929 as the header
 *     states them (version, lengths, printable user, no NUL in the password, name charset);
 *   - REFUSED: the error names a byte that really is wrong, and its answer is the documented
 *     one (fwx__socks_err_reply) with a text;
 *   - the UDP header: accepted iff RSV RSV FRAG are 0 and ATYP is 1 or 4 with the address whole;
 *     then it re-encodes (fwx__socks_encode_udp) to the input's header;
 *   - the reply encoder writes 10 or 22 bytes that parse back, as a request, to its address.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "backends/proxy/socks_wire.h"

#define CHECK(x)                                                                                  \
    do {                                                                                          \
        if (!(x))                                                                                 \
            __builtin_trap();                                                                     \
    } while (0)

#define BUF_MAX 600 /* socks.c's SOCKS_MAX_INPUT */

static const uint8_t MARKER[4] = {0x01, 0xD5, 0xCA, 0x7A};

typedef enum { K_GREET, K_AUTH, K_REQ } kind;

/* One parse and everything it gave back, comparable with memcmp. */
typedef struct verdict {
    fwx__socks_status st;
    fwx__socks_err err;
    size_t used;
    /* the values, with the pointers turned into offsets */
    size_t n_methods, methods_at, user_len, user_at, pass_len, pass_at;
    fwx__socks_request rq;
} verdict;

/* Parses p[0..n) as k, from an exact-size heap copy (a read past it is an ASan report). */
static verdict parse(kind k, const uint8_t *p, size_t n)
{
    verdict v;
    memset(&v, 0, sizeof v);
    uint8_t *c = malloc(n ? n : 1);
    CHECK(c != NULL);
    if (n)
        memcpy(c, p, n);
    fwx__socks_greeting g;
    fwx__socks_auth a;
    if (k == K_GREET) {
        v.st = fwx__socks_parse_greeting(c, n, &g, &v.used, &v.err);
        if (v.st == FWX__SOCKS_DONE) {
            v.n_methods = g.n_methods;
            v.methods_at = (size_t)(g.methods - c);
        }
    } else if (k == K_AUTH) {
        v.st = fwx__socks_parse_auth(c, n, &a, &v.used, &v.err);
        if (v.st == FWX__SOCKS_DONE) {
            v.user_len = a.user_len, v.user_at = (size_t)(a.user - c);
            v.pass_len = a.pass_len, v.pass_at = (size_t)(a.pass - c);
        }
    } else {
        memset(&v.rq, 0, sizeof v.rq);
        v.st = fwx__socks_parse_request(c, n, &v.rq, &v.err);
        if (v.st == FWX__SOCKS_DONE)
            v.used = n;
        else
            memset(&v.rq, 0, sizeof v.rq); /* not an output then */
    }
    free(c);
    CHECK(v.st == FWX__SOCKS_DONE || v.st == FWX__SOCKS_NEED_MORE || v.st == FWX__SOCKS_REFUSED);
    CHECK((v.st == FWX__SOCKS_REFUSED) == (v.err != FWX__SOCKS_E_NONE));
    if (v.st != FWX__SOCKS_DONE)
        v.used = 0;
    return v;
}

/* Field by field: a struct copy need not keep padding bytes, so memcmp of verdicts would lie. */
static bool same(const verdict *a, const verdict *b)
{
    return a->st == b->st && a->err == b->err && a->used == b->used && a->n_methods == b->n_methods &&
           a->methods_at == b->methods_at && a->user_len == b->user_len && a->user_at == b->user_at &&
           a->pass_len == b->pass_len && a->pass_at == b->pass_at && a->rq.cmd == b->rq.cmd &&
           a->rq.atyp == b->rq.atyp && memcmp(&a->rq.addr, &b->rq.addr, sizeof a->rq.addr) == 0 &&
           a->rq.name_len == b->rq.name_len && strcmp(a->rq.name, b->rq.name) == 0 && a->rq.port == b->rq.port;
}

static size_t max_len(kind k)
{
    return k == K_GREET ? FWX__SOCKS_GREETING_MAX : k == K_AUTH ? FWX__SOCKS_AUTH_MAX : FWX__SOCKS_REQUEST_MAX;
}

static bool name_byte(uint8_t b)
{
    return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '.' || b == '-';
}

/* DONE: the values re-encode to the input; they obey the RFCs. */
static void check_done(kind k, const uint8_t *p, size_t n, const verdict *v)
{
    uint8_t e[FWX__SOCKS_AUTH_MAX];
    size_t m = 0;
    CHECK(v->used >= 2 && v->used <= n && v->used <= max_len(k));
    if (k == K_GREET) {
        CHECK(v->n_methods >= 1 && v->methods_at == 2);
        e[m++] = 5;
        e[m++] = (uint8_t)v->n_methods;
        memcpy(e + m, p + 2, v->n_methods);
        m += v->n_methods;
        fwx__socks_greeting g = {p + 2, v->n_methods};
        for (int b = 0; b < 256; b++)
            CHECK(fwx__socks_greeting_offers(&g, (uint8_t)b) == (memchr(p + 2, b, v->n_methods) != NULL));
    } else if (k == K_AUTH) {
        CHECK(v->user_len >= 1 && v->user_len <= 255 && v->pass_len >= 1 && v->pass_len <= 255);
        CHECK(v->user_at == 2 && v->pass_at == 3 + v->user_len);
        for (size_t i = 0; i < v->user_len; i++)
            CHECK(p[2 + i] > ' ' && p[2 + i] < 0x7f);
        CHECK(memchr(p + v->pass_at, 0, v->pass_len) == NULL);
        e[m++] = 1;
        e[m++] = (uint8_t)v->user_len;
        memcpy(e + m, p + v->user_at, v->user_len);
        m += v->user_len;
        e[m++] = (uint8_t)v->pass_len;
        memcpy(e + m, p + v->pass_at, v->pass_len);
        m += v->pass_len;
    } else {
        const fwx__socks_request *r = &v->rq;
        CHECK(r->cmd >= 1 && r->cmd <= 3);
        e[m++] = 5;
        e[m++] = r->cmd;
        e[m++] = 0;
        e[m++] = r->atyp;
        if (r->atyp == FWX__SOCKS_ATYP_IPV4) {
            const struct sockaddr_in *s4 = (const struct sockaddr_in *)&r->addr;
            CHECK(s4->sin_family == AF_INET && ntohs(s4->sin_port) == r->port && r->name[0] == 0 && r->name_len == 0);
            memcpy(e + m, &s4->sin_addr, 4);
            m += 4;
        } else if (r->atyp == FWX__SOCKS_ATYP_IPV6) {
            const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&r->addr;
            CHECK(s6->sin6_family == AF_INET6 && ntohs(s6->sin6_port) == r->port && r->name[0] == 0 &&
                  r->name_len == 0);
            memcpy(e + m, &s6->sin6_addr, 16);
            m += 16;
        } else {
            CHECK(r->atyp == FWX__SOCKS_ATYP_NAME && r->addr.ss_family == 0);
            CHECK(r->name_len >= 1 && r->name_len <= FWX__SOCKS_NAME_MAX && strlen(r->name) == r->name_len);
            for (size_t i = 0; i < r->name_len; i++)
                CHECK(name_byte((uint8_t)r->name[i]));
            e[m++] = (uint8_t)r->name_len;
            memcpy(e + m, r->name, r->name_len);
            m += r->name_len;
        }
        e[m++] = (uint8_t)(r->port >> 8);
        e[m++] = (uint8_t)r->port;
    }
    CHECK(m == v->used && memcmp(e, p, m) == 0);
}

/* REFUSED: the byte the error names is there and wrong; the answer is the documented one. */
static void check_refused(kind k, const uint8_t *p, size_t n, const verdict *v)
{
    const char *t = fwx__socks_err_text(v->err);
    CHECK(t != NULL && t[0] != '\0' && strcmp(t, "bad SOCKS message") != 0);
    int ans = fwx__socks_err_reply(v->err, n > 1 ? p[1] : 0);
    switch (v->err) {
    case FWX__SOCKS_E_VERSION:
        CHECK(k == K_GREET && n >= 1 && p[0] != 5 && ans == FWX__SOCKS_NO_REPLY);
        break;
    case FWX__SOCKS_E_NO_METHODS:
        CHECK(k == K_GREET && n >= 2 && p[0] == 5 && p[1] == 0 && ans == FWX__SOCKS_NO_REPLY);
        break;
    case FWX__SOCKS_E_AUTH_VERSION:
        CHECK(k == K_AUTH && n >= 1 && p[0] != 1 && ans == FWX__SOCKS_NO_REPLY);
        break;
    case FWX__SOCKS_E_AUTH_NO_USER:
        CHECK(k == K_AUTH && n >= 2 && p[0] == 1 && p[1] == 0 && ans == FWX__SOCKS_NO_REPLY);
        break;
    case FWX__SOCKS_E_AUTH_USER_CHAR: {
        CHECK(k == K_AUTH && n >= 3 && p[0] == 1 && p[1] > 0 && ans == 1);
        bool bad = false;
        for (size_t i = 0; i < p[1] && 2 + i < n; i++)
            bad |= p[2 + i] <= ' ' || p[2 + i] >= 0x7f;
        CHECK(bad);
        break;
    }
    case FWX__SOCKS_E_AUTH_NO_PASS:
        CHECK(k == K_AUTH && n >= 3u + p[1] && p[2 + p[1]] == 0 && ans == 1);
        break;
    case FWX__SOCKS_E_AUTH_PASS_NUL:
        CHECK(k == K_AUTH && n > 3u + p[1] && p[2 + p[1]] > 0 &&
              memchr(p + 3 + p[1], 0, n - 3 - p[1] < p[2 + p[1]] ? n - 3 - p[1] : p[2 + p[1]]) != NULL && ans == 1);
        break;
    case FWX__SOCKS_E_REQ_VERSION:
        CHECK(k == K_REQ && n >= 1 && p[0] != 5 && ans == FWX__SOCKS_REP_FAILURE);
        break;
    case FWX__SOCKS_E_CMD:
        CHECK(k == K_REQ && n >= 2 && p[0] == 5 && (p[1] < 1 || p[1] > 3) && ans == FWX__SOCKS_REP_CMD_UNSUPPORTED);
        break;
    case FWX__SOCKS_E_RSV:
        CHECK(k == K_REQ && n >= 3 && p[2] != 0 && ans == FWX__SOCKS_REP_FAILURE);
        break;
    case FWX__SOCKS_E_ATYP:
        CHECK(k == K_REQ && n >= 4 && p[3] != 1 && p[3] != 3 && p[3] != 4 && ans == FWX__SOCKS_REP_ATYP_UNSUPPORTED);
        break;
    case FWX__SOCKS_E_NAME_EMPTY:
    case FWX__SOCKS_E_NAME_LONG:
    case FWX__SOCKS_E_NAME_CHAR: {
        CHECK(k == K_REQ && n >= 5 && p[3] == 3);
        CHECK(ans == (p[1] == 1 ? FWX__SOCKS_REP_HOST_UNREACHABLE : FWX__SOCKS_REP_ATYP_UNSUPPORTED));
        if (v->err == FWX__SOCKS_E_NAME_EMPTY) {
            CHECK(p[4] == 0);
        } else if (v->err == FWX__SOCKS_E_NAME_LONG) {
            CHECK(p[4] > FWX__SOCKS_NAME_MAX);
        } else {
            bool bad = false;
            for (size_t i = 0; i < p[4] && 5 + i < n; i++)
                bad |= !name_byte(p[5 + i]);
            CHECK(bad);
        }
        break;
    }
    case FWX__SOCKS_E_TRAILING: {
        CHECK(k == K_REQ && ans == FWX__SOCKS_REP_FAILURE);
        /* the request without the bytes after it is whole */
        size_t need = p[3] == 1 ? 10 : p[3] == 4 ? 22 : 7u + p[4];
        CHECK(n > need);
        verdict w = parse(k, p, need);
        CHECK(w.st == FWX__SOCKS_DONE);
        break;
    }
    default:
        CHECK(0);
    }
}

/* The verdict of the whole of p[0..n), after checking every shorter prefix agrees with it. */
static verdict judge(kind k, const uint8_t *p, size_t n)
{
    verdict v = parse(k, p, n);
    if (v.st == FWX__SOCKS_DONE)
        check_done(k, p, n, &v);
    else if (v.st == FWX__SOCKS_REFUSED)
        check_refused(k, p, n, &v);
    else
        CHECK(n < max_len(k));
    return v;
}

/* The prefixes of p[0..n): NEED_MORE, then from the deciding byte on, one verdict (a request's
   own DONE followed by TRAILING is the exception the protocol makes). */
static void check_prefixes(kind k, const uint8_t *p, size_t n, const verdict *whole)
{
    bool decided = false;
    for (size_t i = 0; i <= n; i++) {
        verdict v = parse(k, p, i);
        if (!decided && v.st == FWX__SOCKS_NEED_MORE)
            continue;
        if (k == K_REQ && v.st == FWX__SOCKS_DONE && i < n) {
            CHECK(whole->st == FWX__SOCKS_REFUSED && whole->err == FWX__SOCKS_E_TRAILING);
            decided = false; /* the next byte turns it into TRAILING */
            continue;
        }
        decided = true;
        CHECK(same(&v, whole));
    }
}

/* NEED_MORE: some continuation is valid. Greedy, one byte at a time from a few candidates;
   it must reach DONE within the message's maximum. */
static void check_completes(kind k, const uint8_t *p, size_t n)
{
    static const uint8_t cand[] = {5, 1, 0, 'a'};
    uint8_t b[FWX__SOCKS_AUTH_MAX + 1];
    CHECK(n < max_len(k));
    memcpy(b, p, n);
    for (size_t len = n; len < max_len(k); len++) {
        bool next = false;
        for (size_t c = 0; c < sizeof cand && !next; c++) {
            b[len] = cand[c];
            verdict v = parse(k, b, len + 1);
            if (v.st == FWX__SOCKS_DONE) {
                check_done(k, b, len + 1, &v);
                return;
            }
            next = v.st == FWX__SOCKS_NEED_MORE;
        }
        CHECK(next); /* a NEED_MORE no byte of the candidates continues: a dead end */
    }
    CHECK(0); /* NEED_MORE past the longest message */
}

/* The UDP header and the encoders. */
static void check_udp(const uint8_t *p, size_t n)
{
    struct sockaddr_storage dst;
    size_t hdr = 0;
    bool ok = fwx__socks_parse_udp(p, n, &dst, &hdr);
    bool want = n >= 4 && p[0] == 0 && p[1] == 0 && p[2] == 0 && ((p[3] == 1 && n >= 10) || (p[3] == 4 && n >= 22));
    CHECK(ok == want);
    uint8_t e[FWX__SOCKS_REPLY_MAX];
    if (ok) {
        CHECK(hdr == (p[3] == 1 ? 10u : 22u));
        CHECK(fwx__socks_encode_udp(e, (struct sockaddr *)&dst) == hdr && memcmp(e, p, hdr) == 0);
        /* a reply to that address parses back to it (REP in the command's place, made a CONNECT) */
        for (int rep = 0; rep <= 8; rep++) {
            size_t m = fwx__socks_encode_reply(e, (uint8_t)rep, (struct sockaddr *)&dst);
            CHECK(m == hdr && e[0] == 5 && e[1] == rep && e[2] == 0 && memcmp(e + 3, p + 3, hdr - 3) == 0);
            e[1] = FWX__SOCKS_CMD_CONNECT;
            fwx__socks_request r;
            fwx__socks_err err;
            CHECK(fwx__socks_parse_request(e, m, &r, &err) == FWX__SOCKS_DONE);
            CHECK(memcmp(&r.addr, &dst, dst.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)) == 0);
        }
    }
    CHECK(fwx__socks_encode_reply(e, 1, NULL) == 10 && memcmp(e, "\x05\x01\x00\x01\0\0\0\0\0\0", 10) == 0);
}

/* Splits data into chunks at MARKER. Returns the count; offsets/lengths in off/len. */
static size_t split(const uint8_t *d, size_t n, size_t *off, size_t *len, size_t max)
{
    size_t k = 0, start = 0;
    for (size_t i = 0; i + 4 <= n && k + 1 < max; i++) {
        if (memcmp(d + i, MARKER, 4) == 0) {
            off[k] = start, len[k] = i - start, k++;
            start = i + 4;
            i += 3;
        }
    }
    off[k] = start, len[k] = n - start, k++;
    return k;
}

/* A negotiation's messages and their verdicts. */
typedef struct run {
    verdict v[3];
    kind k[3];
    size_t n;
    bool overflow; /* the buffer filled: socks.c closes */
} run;

/* The negotiation as socks.c runs it, the stream arriving in reads that end at cuts[]. */
static void negotiate(bool users, const uint8_t *stream, const size_t *cuts, size_t n_cuts, bool deep, run *out)
{
    uint8_t buf[BUF_MAX];
    size_t len = 0, fed = 0;
    kind k = K_GREET;
    memset(out, 0, sizeof *out);
    for (size_t c = 0; c < n_cuts; c++) {
        size_t want = cuts[c] - fed;
        if (len + want >= BUF_MAX) {
            /* socks.c offers the rest of its buffer; a read that fills it closes the client */
            out->overflow = true;
            return;
        }
        memcpy(buf + len, stream + fed, want);
        len += want;
        fed = cuts[c];
        for (;;) {
            verdict v = parse(k, buf, len);
            if (deep && v.st != FWX__SOCKS_NEED_MORE) {
                /* each message as socks.c hands it over: checked with every prefix */
                verdict j = judge(k, buf, len);
                CHECK(same(&j, &v));
                check_prefixes(k, buf, len, &v);
            }
            if (v.st == FWX__SOCKS_NEED_MORE)
                break;
            out->v[out->n] = v;
            out->k[out->n++] = k;
            if (v.st == FWX__SOCKS_REFUSED || k == K_REQ)
                return;
            memmove(buf, buf + v.used, len - v.used);
            len -= v.used;
            k = k == K_GREET && users ? K_AUTH : K_REQ;
        }
    }
    if (deep) {
        /* the stream ended inside a message: a valid one can still follow */
        verdict j = judge(k, buf, len);
        CHECK(j.st == FWX__SOCKS_NEED_MORE);
        check_prefixes(k, buf, len, &j);
        check_completes(k, buf, len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum { MAX_CHUNKS = 64 };
    size_t off[MAX_CHUNKS], len[MAX_CHUNKS];
    if (size == 0)
        return 0;
    size_t nc = split(data, size, off, len, MAX_CHUNKS);
    bool users = len[0] > 0 && (data[off[0]] & 1);
    if (len[0] > 1)
        check_udp(data + off[0] + 1, len[0] - 1);

    /* The client's stream, and where the fuzzer's reads end in it. */
    uint8_t stream[4096];
    size_t total = 0, cuts[MAX_CHUNKS], n_cuts = 0;
    for (size_t c = 1; c < nc && total + len[c] <= sizeof stream; c++) {
        memcpy(stream + total, data + off[c], len[c]);
        total += len[c];
        cuts[n_cuts++] = total;
    }
    if (total == 0)
        return 0;

    /* The stream's start as each kind of message, so that every parser meets every input. */
    for (kind k = K_GREET; k <= K_REQ; k++) {
        size_t n = total < max_len(k) + 8 ? total : max_len(k) + 8;
        verdict whole = judge(k, stream, n);
        check_prefixes(k, stream, n, &whole);
        if (whole.st == FWX__SOCKS_NEED_MORE)
            check_completes(k, stream, n);
    }

    /* The negotiation in the fuzzer's reads, byte by byte, and in one read. */
    run a, b, w;
    static size_t bytewise[4096];
    for (size_t i = 0; i < total; i++)
        bytewise[i] = i + 1;
    size_t one = total;
    negotiate(users, stream, cuts, n_cuts, true, &a);
    negotiate(users, stream, bytewise, total, false, &b);
    negotiate(users, stream, &one, 1, false, &w);
    const run *runs[3] = {&a, &b, &w};
    for (int r = 0; r < 3; r++) {
        const run *x = runs[r];
        /* the same messages with the same verdicts as byte by byte, but for the buffer filling
           (a read of the whole) and a request's trailing bytes (in the same read) */
        if (x->overflow || b.overflow)
            continue;
        CHECK(x->n == b.n);
        for (size_t i = 0; i < x->n; i++) {
            CHECK(x->k[i] == b.k[i]);
            bool trailing = x->v[i].st == FWX__SOCKS_REFUSED && x->v[i].err == FWX__SOCKS_E_TRAILING &&
                            b.v[i].st == FWX__SOCKS_DONE;
            CHECK(trailing || same(&x->v[i], &b.v[i]));
        }
    }
    return 0;
}
