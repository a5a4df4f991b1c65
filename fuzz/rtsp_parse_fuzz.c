/*
 * fwx fuzzing - the RTSP parser (plugins/rtsp/rtsp_parse.c), libFuzzer target.
 *
 * Input: the first byte picks a split point, the rest is one direction of a control connection.
 *
 * Invariants (a violation is __builtin_trap()):
 *   - rtsp_stream_feed never takes more than it is given, makes progress on every call until
 *     an error, and gives the same events (heads, passed byte counts, error) whether the input
 *     comes whole or split at the chosen point; once in error it stays there and takes nothing;
 *   - the heads and passed bytes it gives, in order, are the input itself, except empty
 *     keep-alive lines between messages (which it drops) and what follows an error;
 *   - every head is at most RTSP_HEAD_MAX bytes, parses again to RTSP_P_OK, has at most
 *     RTSP_HEADERS_MAX headers and a Content-Length of at most RTSP_BODY_MAX;
 *   - a Transport header that parses has 1..RTSP_TRANSPORTS_MAX specs of at most
 *     RTSP_PARAMS_MAX parameters; a request spec that the check accepts for UDP names two
 *     consecutive ports >= 1024 with the lowest even; the formatter, into an exact-size heap
 *     buffer of every size up to the one needed, writes nothing past it, and what it writes
 *     parses again with the same ports;
 *   - the head the filter rewrites (rtsp_fmt_head, its Transport replaced by the formatter's
 *     value) parses again with the same headers and that value; CSeq reads as the parser
 *     accepted it;
 *   - a Session value the filter reads accepted starts with a visible id of at most
 *     RTSP_SESSION_ID_MAX bytes and its timeout is written in it; a refused one has no timeout;
 *   - every status has a text, and a Transport status answers 461, a framing status 400.
 * SPDX-License-Identifier: MIT
 */
#include "rtsp_parse.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>

#define CHECK(x)                                                                                  \
    do {                                                                                          \
        if (!(x))                                                                                 \
            __builtin_trap();                                                                     \
    } while (0)

#define MAX_EVENTS 4096

typedef struct trace {
    size_t n;
    int kind[MAX_EVENTS];   /* RTSP_EV_HEAD, RTSP_EV_PASS (coalesced), RTSP_EV_ERROR */
    size_t len[MAX_EVENTS];
    uint8_t *echo;          /* heads and passed bytes, in order */
    size_t echo_len;
    rtsp_status error;
} trace;

static void add(trace *t, int kind, size_t len)
{
    if (kind == RTSP_EV_PASS && t->n > 0 && t->kind[t->n - 1] == RTSP_EV_PASS) {
        t->len[t->n - 1] += len;
        return;
    }
    CHECK(t->n < MAX_EVENTS);
    t->kind[t->n] = kind;
    t->len[t->n++] = len;
}

static void check_transport(const rtsp_header *h)
{
    rtsp_transport specs[RTSP_TRANSPORTS_MAX];
    size_t n = 99;
    rtsp_status st = rtsp_parse_transport(h->value, h->value_len, specs, &n);
    CHECK(rtsp_status_text(st) != NULL);
    if (st != RTSP_P_OK)
        return;
    CHECK(n >= 1 && n <= RTSP_TRANSPORTS_MAX);
    struct sockaddr_in client = {.sin_family = AF_INET};
    client.sin_addr.s_addr = htonl(0x0a000005);
    for (size_t i = 0; i < n; i++) {
        const rtsp_transport *t = &specs[i];
        CHECK(t->n_params <= RTSP_PARAMS_MAX);
        rtsp_status c = rtsp_check_request_spec(t, (const struct sockaddr *)&client);
        CHECK(rtsp_status_text(c) != NULL);
        if (c != RTSP_P_OK)
            CHECK(rtsp_status_code(c) == 461);
        if (c == RTSP_P_OK && !t->tcp) {
            CHECK(t->n_client_port == 2 && t->client_port[0] % 2 == 0 && t->client_port[0] >= 1024 &&
                  t->client_port[1] == t->client_port[0] + 1);
        }
        rtsp_rewrite rw = {.client_port = 40000, .server_port = 50000, .destination = "10.1.0.1",
                           .drop_source = true};
        char full[RTSP_TRANSPORT_TEXT_MAX * 2];
        size_t need = rtsp_fmt_transport(full, sizeof full, t, &rw);
        if (need == 0)
            continue;
        CHECK(need == strlen(full));
        for (size_t cap = need > 64 ? need - 64 : 0; cap <= need + 1; cap++) {
            char *b = malloc(cap + 1);
            CHECK(b != NULL);
            b[cap] = 'Z';
            size_t got = rtsp_fmt_transport(b, cap, t, &rw);
            CHECK(b[cap] == 'Z');
            CHECK(cap > need ? got == need && memcmp(b, full, need + 1) == 0 : got == 0);
            free(b);
        }
        rtsp_transport again[RTSP_TRANSPORTS_MAX];
        size_t m;
        if (rtsp_parse_transport(full, need, again, &m) == RTSP_P_OK) {
            CHECK(m == 1);
            if (t->n_client_port > 0)
                CHECK(again[0].n_client_port == 2 && again[0].client_port[0] == 40000);
            CHECK(again[0].source == -1);
        }
    }
}

/* The Session value the filter reads its timeout from: an accepted one starts with an id of
   1..RTSP_SESSION_ID_MAX visible bytes other than ';', ends there or at a ';', and its timeout is
   0 (none) or 1..999999999 written in the value as `timeout=` and those digits; a refused one
   leaves the timeout at 0. The same on an exact-size heap copy (nothing read past the value). */
static void check_session(const rtsp_header *h)
{
    char *v = malloc(h->value_len ? h->value_len : 1);
    CHECK(v != NULL);
    memcpy(v, h->value, h->value_len);
    size_t id_len = 0;
    uint32_t timeout = 7;
    bool ok = rtsp_parse_session(v, h->value_len, &id_len, &timeout);
    if (ok) {
        CHECK(id_len >= 1 && id_len <= RTSP_SESSION_ID_MAX && id_len <= h->value_len);
        for (size_t i = 0; i < id_len; i++)
            CHECK((unsigned char)v[i] > 0x20 && (unsigned char)v[i] < 0x7f && v[i] != ';');
        CHECK(id_len == h->value_len || v[id_len] == ';');
        CHECK(timeout <= 999999999u);
        if (timeout > 0) {
            /* some `timeout=` (any case) after the id is followed by digits of that value */
            bool found = false;
            for (size_t i = id_len; !found && i + 8 <= h->value_len; i++) {
                if (strncasecmp(v + i, "timeout=", 8) != 0)
                    continue;
                uint64_t val = 0;
                size_t j = i + 8;
                while (j < h->value_len && v[j] >= '0' && v[j] <= '9' && val <= 999999999u)
                    val = val * 10 + (uint64_t)(v[j++] - '0');
                found = j > i + 8 && val == timeout;
            }
            CHECK(found);
        }
    } else {
        CHECK(timeout == 0);
    }
    free(v);
}

static void check_head(const rtsp_stream *s)
{
    CHECK(s->head_len <= RTSP_HEAD_MAX);
    rtsp_msg m;
    CHECK(rtsp_parse_head(s->head, s->head_len, &m) == RTSP_P_OK);
    CHECK(m.n_headers <= RTSP_HEADERS_MAX);
    CHECK(m.content_length <= RTSP_BODY_MAX);
    CHECK(m.content_length == s->msg.content_length);
    if (m.transport >= 0)
        check_transport(&m.headers[m.transport]);
    uint32_t cseq;
    CHECK(rtsp_msg_cseq(&m, &cseq) == (m.cseq >= 0));
    if (m.session >= 0)
        check_session(&m.headers[m.session]);
    if (m.transport >= 0) {
        static const char tr[] = "RTP/AVP;unicast;client_port=40000-40001";
        char *out = malloc(RTSP_HEAD_MAX + 1);
        CHECK(out != NULL);
        size_t k = rtsp_fmt_head(out, RTSP_HEAD_MAX + 1, s->head, s->head_len, &m, tr, sizeof tr - 1);
        if (k > 0) {
            rtsp_msg r;
            CHECK(k == strlen(out) && k <= RTSP_HEAD_MAX);
            CHECK(rtsp_parse_head(out, k, &r) == RTSP_P_OK);
            CHECK(r.n_headers == m.n_headers && r.transport == m.transport && r.cseq == m.cseq);
            CHECK(r.headers[r.transport].value_len == sizeof tr - 1 &&
                  memcmp(r.headers[r.transport].value, tr, sizeof tr - 1) == 0);
        }
        free(out);
    }
    char err[256];
    size_t n = rtsp_fmt_error(err, sizeof err, 461, &m);
    CHECK(n > 0 && n == strlen(err));
    rtsp_msg r;
    CHECK(rtsp_parse_head(err, n, &r) == RTSP_P_OK && r.response && r.code == 461);
}

static void run(const uint8_t *p, size_t n, size_t split, trace *t, bool deep)
{
    rtsp_stream *s = malloc(sizeof *s);
    CHECK(s != NULL);
    rtsp_stream_init(s);
    memset(t, 0, offsetof(trace, echo));
    t->echo_len = 0;
    size_t cuts[2] = {split, n};
    size_t off = 0;
    for (int c = 0; c < 2; c++) {
        size_t end = cuts[c];
        while (off < end) {
            rtsp_event ev;
            const uint8_t *pass;
            size_t pass_len;
            size_t used = rtsp_stream_feed(s, p + off, end - off, &ev, &pass, &pass_len);
            CHECK(used <= end - off);
            if (ev == RTSP_EV_ERROR) {
                CHECK(s->state == RTSP_S_ERROR);
                CHECK(rtsp_status_code(s->error) == 400 || rtsp_status_code(s->error) == 461);
                CHECK(rtsp_status_text(s->error) != NULL);
                add(t, RTSP_EV_ERROR, 0);
                t->error = s->error;
                CHECK(rtsp_stream_feed(s, p + off, end - off, &ev, &pass, &pass_len) == 0 && ev == RTSP_EV_ERROR);
                free(s);
                return;
            }
            CHECK(used > 0);
            if (ev == RTSP_EV_HEAD) {
                add(t, RTSP_EV_HEAD, s->head_len);
                memcpy(t->echo + t->echo_len, s->head, s->head_len);
                t->echo_len += s->head_len;
                if (deep)
                    check_head(s);
            } else if (ev == RTSP_EV_PASS) {
                CHECK(pass_len > 0 && pass_len <= 4 + 65535);
                add(t, RTSP_EV_PASS, pass_len);
                memcpy(t->echo + t->echo_len, pass, pass_len);
                t->echo_len += pass_len;
            } else {
                CHECK(used == end - off);
            }
            CHECK(t->echo_len <= n);
            off += used;
        }
    }
    free(s);
}

/* The input without the keep-alive CRLFs the stream drops: a CRLF where a message would start.
   Re-derived from the trace: every gap between what was given back is such a CRLF. */
static void check_echo(const uint8_t *p, size_t n, const trace *t)
{
    size_t i = 0, e = 0;
    while (e < t->echo_len) {
        CHECK(i < n);
        if (p[i] == t->echo[e]) {
            i++;
            e++;
            continue;
        }
        /* a dropped keep-alive: exactly CR LF */
        CHECK(i + 1 < n && p[i] == '\r' && p[i + 1] == '\n');
        i += 2;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t n = size - 1;
    const uint8_t *p = data + 1;
    size_t split = n == 0 ? 0 : (size_t)data[0] * 257u % (n + 1);
    static trace whole, cut;
    whole.echo = malloc(n + 1);
    cut.echo = malloc(n + 1);
    CHECK(whole.echo != NULL && cut.echo != NULL);
    run(p, n, n, &whole, true);
    run(p, n, split, &cut, false);
    CHECK(whole.n == cut.n);
    for (size_t i = 0; i < whole.n; i++)
        CHECK(whole.kind[i] == cut.kind[i] && whole.len[i] == cut.len[i]);
    CHECK(whole.error == cut.error);
    CHECK(whole.echo_len == cut.echo_len && memcmp(whole.echo, cut.echo, whole.echo_len) == 0);
    check_echo(p, n, &whole);
    free(whole.echo);
    free(cut.echo);
    return 0;
}
