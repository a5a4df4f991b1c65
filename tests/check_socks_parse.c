/*
 * fwx tests - the SOCKS5 wire format (lib/backends/proxy/socks_wire.c), table-driven: every
 * greeting, RFC 1929 login and request case with its exact verdict, the byte at which a refusal
 * is decided and the answer the gateway sends for it; every case split at every byte (each
 * prefix is NEED_MORE before the deciding byte and the same verdict from it on); the values a
 * good message carries; messages sent back to back; the UDP header; the encoders byte for byte.
 * Each input is an exact-size heap copy, so a read past it is an ASan report.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

#include "backends/proxy/socks_wire.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { GREET, AUTH, REQ } kind;

typedef struct wcase {
    const char *what;
    kind k;
    const char *msg;
    size_t len;
    fwx__socks_status want;
    fwx__socks_err err;
    size_t at;  /* DONE: the message's length (bytes used); REFUSED: the prefix length that decides */
    int answer; /* REFUSED: what the gateway answers (reply code, RFC 1929 status, or NO_REPLY) */
} wcase;

#define M(s) s, sizeof(s) - 1
#define NONE FWX__SOCKS_E_NONE
#define NO FWX__SOCKS_NO_REPLY
#define DONE FWX__SOCKS_DONE
#define REF FWX__SOCKS_REFUSED

static const wcase cases[] = {
    /* greetings (RFC 1928 section 3) */
    {"no auth", GREET, M("\x05\x01\x00"), DONE, NONE, 3, 0},
    {"three methods", GREET, M("\x05\x03\x00\x01\x02"), DONE, NONE, 5, 0},
    {"greeting then request", GREET, M("\x05\x01\x00\x05\x01\x00\x01"), DONE, NONE, 3, 0},
    {"method list of 255", GREET, NULL, 0, DONE, NONE, 257, 0}, /* built in greeting_255 */
    {"SOCKS 4", GREET, M("\x04\x01\x00\x50\x7f\x00\x00\x01\x00"), REF, FWX__SOCKS_E_VERSION, 1, NO},
    {"HTTP", GREET, M("GET / HTTP/1.1\r\n"), REF, FWX__SOCKS_E_VERSION, 1, NO},
    {"zero methods", GREET, M("\x05\x00\x00"), REF, FWX__SOCKS_E_NO_METHODS, 2, NO},
    /* RFC 1929 logins */
    {"login", AUTH, M("\x01\x04user\x06secret"), DONE, NONE, 13, 0},
    {"login then request", AUTH, M("\x01\x01u\x01p\x05\x01"), DONE, NONE, 5, 0},
    {"login version 5", AUTH, M("\x05\x01\x00"), REF, FWX__SOCKS_E_AUTH_VERSION, 1, NO},
    {"login empty user", AUTH, M("\x01\x00\x01p"), REF, FWX__SOCKS_E_AUTH_NO_USER, 2, NO},
    {"login empty password", AUTH, M("\x01\x01u\x00"), REF, FWX__SOCKS_E_AUTH_NO_PASS, 4, 1},
    {"login user with space", AUTH, M("\x01\x03u s\x01p"), REF, FWX__SOCKS_E_AUTH_USER_CHAR, 4, 1},
    {"login user with NUL", AUTH, M("\x01\x02u\x00\x01p"), REF, FWX__SOCKS_E_AUTH_USER_CHAR, 4, 1},
    {"login user 8-bit", AUTH, M("\x01\x01\xe9\x01p"), REF, FWX__SOCKS_E_AUTH_USER_CHAR, 3, 1},
    {"login password with NUL", AUTH, M("\x01\x01u\x03p\x00q"), REF, FWX__SOCKS_E_AUTH_PASS_NUL, 6, 1},
    {"login password with space", AUTH, M("\x01\x01u\x03p q"), DONE, NONE, 7, 0},
    /* requests (RFC 1928 section 4) */
    {"CONNECT IPv4", REQ, M("\x05\x01\x00\x01\xc0\x00\x02\x07\x00\x50"), DONE, NONE, 10, 0},
    {"CONNECT IPv6", REQ, M("\x05\x01\x00\x04\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x07\x01\xbb"), DONE, NONE, 22, 0},
    {"CONNECT name", REQ, M("\x05\x01\x00\x03\x0b" "example.com\x00\x50"), DONE, NONE, 18, 0},
    {"CONNECT port 0", REQ, M("\x05\x01\x00\x01\xc0\x00\x02\x07\x00\x00"), DONE, NONE, 10, 0},
    {"BIND IPv4", REQ, M("\x05\x02\x00\x01\xc0\x00\x02\x07\x00\x00"), DONE, NONE, 10, 0},
    {"UDP ASSOCIATE any", REQ, M("\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00"), DONE, NONE, 10, 0},
    {"BIND name parses", REQ, M("\x05\x02\x00\x03\x01h\x00\x15"), DONE, NONE, 8, 0},
    {"request version 4", REQ, M("\x04\x01\x00\x01\xc0\x00\x02\x07\x00\x50"), REF, FWX__SOCKS_E_REQ_VERSION, 1, 1},
    {"command 0", REQ, M("\x05\x00\x00\x01\xc0\x00\x02\x07\x00\x50"), REF, FWX__SOCKS_E_CMD, 2, 7},
    {"command 4", REQ, M("\x05\x04\x00\x01\xc0\x00\x02\x07\x00\x50"), REF, FWX__SOCKS_E_CMD, 2, 7},
    {"command 9 and RSV 1", REQ, M("\x05\x09\x01\x01"), REF, FWX__SOCKS_E_CMD, 2, 7},
    {"RSV 1", REQ, M("\x05\x01\x01\x01\xc0\x00\x02\x07\x00\x50"), REF, FWX__SOCKS_E_RSV, 3, 1},
    {"ATYP 0", REQ, M("\x05\x01\x00\x00\xc0\x00\x02\x07\x00\x50"), REF, FWX__SOCKS_E_ATYP, 4, 8},
    {"ATYP 2", REQ, M("\x05\x01\x00\x02\xc0\x00\x02\x07\x00\x50"), REF, FWX__SOCKS_E_ATYP, 4, 8},
    {"ATYP 9", REQ, M("\x05\x01\x00\x09\x00\x00\x00\x00\x00\x50"), REF, FWX__SOCKS_E_ATYP, 4, 8},
    {"name empty", REQ, M("\x05\x01\x00\x03\x00\x00\x50"), REF, FWX__SOCKS_E_NAME_EMPTY, 5, 4},
    {"name with NUL", REQ, M("\x05\x01\x00\x03\x05" "ex\0am\x00\x50"), REF, FWX__SOCKS_E_NAME_CHAR, 8, 4},
    {"name with at", REQ, M("\x05\x01\x00\x03\x0a" "user@h.com\x00\x50"), REF, FWX__SOCKS_E_NAME_CHAR, 10, 4},
    {"name with space", REQ, M("\x05\x01\x00\x03\x03" "a b\x00\x50"), REF, FWX__SOCKS_E_NAME_CHAR, 7, 4},
    {"name 8-bit", REQ, M("\x05\x01\x00\x03\x02" "\xc3\xa9\x00\x50"), REF, FWX__SOCKS_E_NAME_CHAR, 6, 4},
    {"name length 254", REQ, M("\x05\x01\x00\x03\xfe"), REF, FWX__SOCKS_E_NAME_LONG, 5, 4},
    {"name length 255", REQ, M("\x05\x01\x00\x03\xff"), REF, FWX__SOCKS_E_NAME_LONG, 5, 4},
    {"BIND bad name", REQ, M("\x05\x02\x00\x03\x01_\x00\x15"), REF, FWX__SOCKS_E_NAME_CHAR, 6, 8},
    {"UDP empty name", REQ, M("\x05\x03\x00\x03\x00\x00\x00"), REF, FWX__SOCKS_E_NAME_EMPTY, 5, 8},
    {"bytes after IPv4", REQ, M("\x05\x01\x00\x01\x7f\x00\x00\x03\x1f\x90GET "), REF, FWX__SOCKS_E_TRAILING, 11, 1},
    {"bytes after name", REQ, M("\x05\x01\x00\x03\x01h\x00\x50\x00"), REF, FWX__SOCKS_E_TRAILING, 9, 1},
    {"two requests", REQ, M("\x05\x01\x00\x01\x7f\x00\x00\x03\x1f\x90\x05\x01\x00\x01\x7f\x00\x00\x03\x1f\x90"), REF,
     FWX__SOCKS_E_TRAILING, 11, 1},
};

/* The 257-byte greeting: version 5, 255 methods 0x00-0xfe. */
static uint8_t greeting_255[257];

static const uint8_t *case_bytes(const wcase *c, size_t *len)
{
    if (c->msg != NULL) {
        *len = c->len;
        return (const uint8_t *)c->msg;
    }
    greeting_255[0] = 5;
    greeting_255[1] = 255;
    for (int i = 0; i < 255; i++)
        greeting_255[2 + i] = (uint8_t)i;
    *len = sizeof greeting_255;
    return greeting_255;
}

static fwx__socks_greeting g_out;
static fwx__socks_auth a_out;
static fwx__socks_request r_out;

/* Parses p[0..n) as c's kind from an exact-size heap copy; *used gets the bytes used (DONE). */
static fwx__socks_status parse(kind k, const uint8_t *p, size_t n, fwx__socks_err *err, size_t *used)
{
    uint8_t *copy = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, p, n);
    fwx__socks_status st;
    *used = (size_t)-1;
    *err = (fwx__socks_err)-1;
    if (k == GREET) {
        st = fwx__socks_parse_greeting(copy, n, &g_out, used, err);
    } else if (k == AUTH) {
        st = fwx__socks_parse_auth(copy, n, &a_out, used, err);
    } else {
        st = fwx__socks_parse_request(copy, n, &r_out, err);
        if (st == FWX__SOCKS_DONE)
            *used = n;
    }
    free(copy); /* the outputs point into it: only their lengths are used below */
    return st;
}

START_TEST(table)
{
    const wcase *c = &cases[_i];
    size_t len, used;
    const uint8_t *p = case_bytes(c, &len);
    fwx__socks_err err;
    fwx__socks_status st = parse(c->k, p, len, &err, &used);
    ck_assert_msg(st == c->want, "%s: status %d, want %d (err %d)", c->what, st, c->want, err);
    ck_assert_msg(err == c->err, "%s: err %d (%s), want %d", c->what, err, fwx__socks_err_text(err), c->err);
    if (st == FWX__SOCKS_DONE)
        ck_assert_msg(used == c->at, "%s: used %zu, want %zu", c->what, used, c->at);
    else
        ck_assert_msg(fwx__socks_err_reply(err, len > 1 ? p[1] : 0) == c->answer, "%s: answer %d, want %d", c->what,
                      fwx__socks_err_reply(err, len > 1 ? p[1] : 0), c->answer);
    /* Split at every byte: socks.c re-parses all it has after each read, so a split is a
       prefix. Before the deciding byte a prefix is NEED_MORE; from it on, the same verdict. */
    for (size_t k = 0; k < len; k++) {
        fwx__socks_status sk = parse(c->k, p, k, &err, &used);
        if (c->err == FWX__SOCKS_E_TRAILING && k == c->at - 1) {
            /* the request alone, before the byte too many */
            ck_assert_msg(sk == FWX__SOCKS_DONE, "%s: prefix %zu: status %d, want DONE", c->what, k, sk);
            ck_assert_int_eq(err, FWX__SOCKS_E_NONE);
        } else if (k < c->at) {
            ck_assert_msg(sk == FWX__SOCKS_NEED_MORE, "%s: prefix %zu: status %d, want NEED_MORE", c->what, k, sk);
            ck_assert_int_eq(err, FWX__SOCKS_E_NONE);
        } else {
            ck_assert_msg(sk == c->want && err == c->err, "%s: prefix %zu: status %d err %d, want %d err %d", c->what, k,
                          sk, err, c->want, c->err);
            if (sk == FWX__SOCKS_DONE)
                ck_assert_uint_eq(used, c->at);
        }
    }
}
END_TEST

/* What a good message carries. */
START_TEST(values)
{
    static const uint8_t greet[] = {5, 3, 0x09, 0x02, 0x00, 0xaa};
    fwx__socks_greeting g;
    fwx__socks_err err;
    size_t used;
    ck_assert_int_eq(fwx__socks_parse_greeting(greet, sizeof greet, &g, &used, &err), FWX__SOCKS_DONE);
    ck_assert_uint_eq(used, 5);
    ck_assert_ptr_eq(g.methods, greet + 2);
    ck_assert_uint_eq(g.n_methods, 3);
    ck_assert(fwx__socks_greeting_offers(&g, 0x00));
    ck_assert(fwx__socks_greeting_offers(&g, 0x02));
    ck_assert(!fwx__socks_greeting_offers(&g, 0x01));
    ck_assert(!fwx__socks_greeting_offers(&g, 0xaa)); /* the next message's byte, not a method */

    static const uint8_t login[] = "\x01\x05" "alice" "\x03" "p w";
    fwx__socks_auth a;
    ck_assert_int_eq(fwx__socks_parse_auth(login, sizeof login - 1, &a, &used, &err), FWX__SOCKS_DONE);
    ck_assert_uint_eq(used, sizeof login - 1);
    ck_assert_uint_eq(a.user_len, 5);
    ck_assert_int_eq(memcmp(a.user, "alice", 5), 0);
    ck_assert_ptr_eq(a.pass, login + 8);
    ck_assert_uint_eq(a.pass_len, 3);
    ck_assert_int_eq(memcmp(a.pass, "p w", 3), 0);

    fwx__socks_request r;
    static const uint8_t v4[] = {5, 1, 0, 1, 192, 0, 2, 7, 0x1f, 0x90};
    ck_assert_int_eq(fwx__socks_parse_request(v4, sizeof v4, &r, &err), FWX__SOCKS_DONE);
    ck_assert_uint_eq(r.cmd, FWX__SOCKS_CMD_CONNECT);
    ck_assert_uint_eq(r.atyp, FWX__SOCKS_ATYP_IPV4);
    ck_assert_uint_eq(r.port, 8080);
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&r.addr;
    ck_assert_int_eq(s4->sin_family, AF_INET);
    ck_assert_uint_eq(ntohs(s4->sin_port), 8080);
    ck_assert_uint_eq(ntohl(s4->sin_addr.s_addr), 0xc0000207u);
    ck_assert_str_eq(r.name, "");
    ck_assert_uint_eq(r.name_len, 0);

    /* A v4-mapped IPv6 address comes as sent: canonicalising it is the caller's. */
    static const uint8_t v6[] = {5, 3, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1, 0xff, 0xff};
    ck_assert_int_eq(fwx__socks_parse_request(v6, sizeof v6, &r, &err), FWX__SOCKS_DONE);
    ck_assert_uint_eq(r.cmd, FWX__SOCKS_CMD_UDP);
    ck_assert_uint_eq(r.atyp, FWX__SOCKS_ATYP_IPV6);
    ck_assert_uint_eq(r.port, 65535);
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&r.addr;
    ck_assert_int_eq(s6->sin6_family, AF_INET6);
    ck_assert_uint_eq(ntohs(s6->sin6_port), 65535);
    ck_assert_int_eq(memcmp(&s6->sin6_addr, v6 + 4, 16), 0);

    static const uint8_t name[] = "\x05\x01\x00\x03\x0d" "ftp.Example-1" "\x00\x15";
    ck_assert_int_eq(fwx__socks_parse_request(name, sizeof name - 1, &r, &err), FWX__SOCKS_DONE);
    ck_assert_uint_eq(r.atyp, FWX__SOCKS_ATYP_NAME);
    ck_assert_str_eq(r.name, "ftp.Example-1");
    ck_assert_uint_eq(r.name_len, 13);
    ck_assert_uint_eq(r.port, 21);
    ck_assert_int_eq(r.addr.ss_family, 0);
}
END_TEST

/* Host names of 1 and 253 bytes pass; 254 is refused at its length byte (in the table). */
START_TEST(name_lengths)
{
    uint8_t m[4 + 1 + 253 + 2];
    fwx__socks_request r;
    fwx__socks_err err;
    for (size_t n = 1; n <= FWX__SOCKS_NAME_MAX; n++) {
        m[0] = 5, m[1] = 1, m[2] = 0, m[3] = 3, m[4] = (uint8_t)n;
        for (size_t i = 0; i < n; i++)
            m[5 + i] = "a.-9Z"[i % 5];
        m[5 + n] = 0x01, m[6 + n] = 0xbb;
        size_t len = 7 + n;
        uint8_t *copy = malloc(len);
        memcpy(copy, m, len);
        ck_assert_int_eq(fwx__socks_parse_request(copy, len, &r, &err), FWX__SOCKS_DONE);
        ck_assert_uint_eq(r.name_len, n);
        ck_assert_uint_eq(strlen(r.name), n);
        ck_assert_int_eq(memcmp(r.name, m + 5, n), 0);
        ck_assert_uint_eq(r.port, 443);
        /* every bad byte, at the last position of the name */
        for (int b = 0; b < 256; b++) {
            bool ok = (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '.' || b == '-';
            copy[4 + n] = (uint8_t)b;
            fwx__socks_status st = fwx__socks_parse_request(copy, len, &r, &err);
            ck_assert_int_eq(st, ok ? FWX__SOCKS_DONE : FWX__SOCKS_REFUSED);
            ck_assert_int_eq(err, ok ? FWX__SOCKS_E_NONE : FWX__SOCKS_E_NAME_CHAR);
        }
        free(copy);
    }
}
END_TEST

/* Greeting, login and request back to back in one buffer, as a client may pipeline them. */
START_TEST(back_to_back)
{
    static const uint8_t all[] = "\x05\x02\x00\x02" "\x01\x03" "bob" "\x02" "pw" "\x05\x01\x00\x01\x0a\x00\x00\x05\x00\x16";
    size_t n = sizeof all - 1, at = 0, used;
    fwx__socks_greeting g;
    fwx__socks_auth a;
    fwx__socks_request r;
    fwx__socks_err err;
    ck_assert_int_eq(fwx__socks_parse_greeting(all, n, &g, &used, &err), FWX__SOCKS_DONE);
    ck_assert_uint_eq(used, 4);
    at += used;
    ck_assert_int_eq(fwx__socks_parse_auth(all + at, n - at, &a, &used, &err), FWX__SOCKS_DONE);
    ck_assert_uint_eq(used, 8);
    at += used;
    ck_assert_int_eq(fwx__socks_parse_request(all + at, n - at, &r, &err), FWX__SOCKS_DONE);
    ck_assert_uint_eq(r.port, 22);
    /* The request is the end: a login parser given the request sees a wrong version. */
    ck_assert_int_eq(fwx__socks_parse_auth(all + at, n - at, &a, &used, &err), FWX__SOCKS_REFUSED);
    ck_assert_int_eq(err, FWX__SOCKS_E_AUTH_VERSION);
}
END_TEST

/* Every error has a text of its own and the answer the header documents. */
START_TEST(errors)
{
    for (int e = 0; e < FWX__SOCKS_E_ERR_COUNT; e++) {
        const char *t = fwx__socks_err_text((fwx__socks_err)e);
        ck_assert_ptr_nonnull(t);
        ck_assert_str_ne(t, "bad SOCKS message");
        for (int f = 0; f < e; f++)
            ck_assert_str_ne(t, fwx__socks_err_text((fwx__socks_err)f));
    }
    ck_assert_str_eq(fwx__socks_err_text(FWX__SOCKS_E_ERR_COUNT), "bad SOCKS message");
    static const struct {
        fwx__socks_err e;
        int connect, bind, udp;
    } want[] = {
        {FWX__SOCKS_E_NONE, NO, NO, NO},
        {FWX__SOCKS_E_VERSION, NO, NO, NO},
        {FWX__SOCKS_E_NO_METHODS, NO, NO, NO},
        {FWX__SOCKS_E_AUTH_VERSION, NO, NO, NO},
        {FWX__SOCKS_E_AUTH_NO_USER, NO, NO, NO},
        {FWX__SOCKS_E_AUTH_NO_PASS, 1, 1, 1},
        {FWX__SOCKS_E_AUTH_USER_CHAR, 1, 1, 1},
        {FWX__SOCKS_E_AUTH_PASS_NUL, 1, 1, 1},
        {FWX__SOCKS_E_REQ_VERSION, 1, 1, 1},
        {FWX__SOCKS_E_CMD, 7, 7, 7},
        {FWX__SOCKS_E_RSV, 1, 1, 1},
        {FWX__SOCKS_E_ATYP, 8, 8, 8},
        {FWX__SOCKS_E_NAME_EMPTY, 4, 8, 8},
        {FWX__SOCKS_E_NAME_LONG, 4, 8, 8},
        {FWX__SOCKS_E_NAME_CHAR, 4, 8, 8},
        {FWX__SOCKS_E_TRAILING, 1, 1, 1},
    };
    ck_assert_uint_eq(sizeof want / sizeof want[0], FWX__SOCKS_E_ERR_COUNT);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        ck_assert_int_eq(want[i].e, (int)i);
        ck_assert_int_eq(fwx__socks_err_reply(want[i].e, FWX__SOCKS_CMD_CONNECT), want[i].connect);
        ck_assert_int_eq(fwx__socks_err_reply(want[i].e, FWX__SOCKS_CMD_BIND), want[i].bind);
        ck_assert_int_eq(fwx__socks_err_reply(want[i].e, FWX__SOCKS_CMD_UDP), want[i].udp);
    }
}
END_TEST

static void sa(struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
    memset(ss, 0, sizeof *ss);
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        ck_assert_int_eq(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        ck_assert_int_eq(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    }
}

START_TEST(encoders)
{
    uint8_t out[FWX__SOCKS_REPLY_MAX + 4];
    memset(out, 0xee, sizeof out);
    ck_assert_uint_eq(fwx__socks_encode_method(out, FWX__SOCKS_METHOD_NONE), 2);
    ck_assert_int_eq(memcmp(out, "\x05\x00\xee", 3), 0);
    ck_assert_uint_eq(fwx__socks_encode_method(out, FWX__SOCKS_METHOD_REFUSED), 2);
    ck_assert_int_eq(memcmp(out, "\x05\xff", 2), 0);
    ck_assert_uint_eq(fwx__socks_encode_auth(out, 1), 2);
    ck_assert_int_eq(memcmp(out, "\x01\x01", 2), 0);

    struct sockaddr_storage ss;
    memset(out, 0xee, sizeof out);
    sa(&ss, "192.0.2.7", 1080);
    ck_assert_uint_eq(fwx__socks_encode_reply(out, 0, (struct sockaddr *)&ss), 10);
    ck_assert_int_eq(memcmp(out, "\x05\x00\x00\x01\xc0\x00\x02\x07\x04\x38\xee", 11), 0);
    ck_assert_uint_eq(fwx__socks_encode_reply(out, 5, NULL), 10);
    ck_assert_int_eq(memcmp(out, "\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00", 10), 0);
    ss.ss_family = AF_UNIX;
    ck_assert_uint_eq(fwx__socks_encode_reply(out, 1, (struct sockaddr *)&ss), 10);
    ck_assert_int_eq(memcmp(out, "\x05\x01\x00\x01\x00\x00\x00\x00\x00\x00", 10), 0);
    memset(out, 0xee, sizeof out);
    sa(&ss, "2001:db8::7", 443);
    ck_assert_uint_eq(fwx__socks_encode_reply(out, 0, (struct sockaddr *)&ss), 22);
    ck_assert_int_eq(memcmp(out, "\x05\x00\x00\x04\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x07\x01\xbb\xee", 23), 0);

    /* The UDP header, and back through the parser with the payload after it. */
    uint8_t dgram[FWX__SOCKS_REPLY_MAX + 3];
    struct sockaddr_storage back;
    size_t hdr;
    const char *ips[] = {"198.51.100.9", "2001:db8::53"};
    for (int i = 0; i < 2; i++) {
        sa(&ss, ips[i], 53);
        size_t h = fwx__socks_encode_udp(dgram, (struct sockaddr *)&ss);
        ck_assert_uint_eq(h, i == 0 ? 10 : 22);
        ck_assert_int_eq(memcmp(dgram, "\x00\x00\x00", 3), 0);
        memcpy(dgram + h, "abc", 3);
        ck_assert(fwx__socks_parse_udp(dgram, h + 3, &back, &hdr));
        ck_assert_uint_eq(hdr, h);
        ck_assert_int_eq(memcmp(&back, &ss, i == 0 ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)), 0);
        /* a header cut short is dropped */
        for (size_t k = 0; k < h; k++)
            ck_assert(!fwx__socks_parse_udp(dgram, k, &back, &hdr));
    }
    ss.ss_family = AF_UNIX;
    ck_assert_uint_eq(fwx__socks_encode_udp(dgram, (struct sockaddr *)&ss), 0);
    ck_assert_uint_eq(fwx__socks_encode_udp(dgram, NULL), 0);
}
END_TEST

/* UDP datagrams dropped: a fragment, RSV not 0, a host name, an unknown type. */
START_TEST(udp_refusals)
{
    static const struct {
        const char *what;
        const char *d;
        size_t n;
    } bad[] = {
        {"fragment 1", M("\x00\x00\x01\x01\x0a\x00\x00\x01\x00\x35x")},
        {"RSV", M("\x00\x01\x00\x01\x0a\x00\x00\x01\x00\x35x")},
        {"RSV high", M("\x01\x00\x00\x01\x0a\x00\x00\x01\x00\x35x")},
        {"host name", M("\x00\x00\x00\x03\x01h\x00\x35x")},
        {"ATYP 2", M("\x00\x00\x00\x02\x0a\x00\x00\x01\x00\x35x")},
        {"IPv6 cut", M("\x00\x00\x00\x04\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x07\x00")},
    };
    struct sockaddr_storage dst;
    size_t hdr;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!fwx__socks_parse_udp((const uint8_t *)bad[i].d, bad[i].n, &dst, &hdr), "%s accepted", bad[i].what);
    /* An empty payload is a datagram too. */
    ck_assert(fwx__socks_parse_udp((const uint8_t *)"\x00\x00\x00\x01\x0a\x00\x00\x01\x00\x35", 10, &dst, &hdr));
    ck_assert_uint_eq(hdr, 10);
}
END_TEST

static Suite *socks_parse_suite(void)
{
    Suite *s = suite_create("socks_parse");
    TCase *tc = tcase_create("negotiation");
    tcase_add_loop_test(tc, table, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, values);
    tcase_add_test(tc, name_lengths);
    tcase_add_test(tc, back_to_back);
    tcase_add_test(tc, errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("encoders");
    tcase_add_test(tc, encoders);
    tcase_add_test(tc, udp_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(socks_parse_suite()); }
