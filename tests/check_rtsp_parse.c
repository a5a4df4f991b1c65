/*
 * fwx tests - the RTSP filter's parser (plugins/rtsp/rtsp_parse.c), table-driven: what real
 * clients and servers send (gst-rtsp-server, ffmpeg, VLC) accepted with the values they carry;
 * the RTSP rows of doc/security.md (third-party destination, privileged, odd and huge port
 * ranges, transport decoys, server-side bounce, interleaved payload read as requests, header
 * abuse) refused with their exact status and reply code; framing split at every byte giving the
 * same events as whole; and the formatters.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "rtsp_parse.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S(x) x, sizeof(x) - 1

/* ---- heads -------------------------------------------------------------------------------- */

typedef struct head_case {
    const char *what;
    const char *head;
    size_t len;
    rtsp_status want;
} head_case;

static const head_case head_cases[] = {
    {"gst OPTIONS", S("OPTIONS rtsp://10.1.0.2:8554/test RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: GStreamer/1.22.0\r\n\r\n"), RTSP_P_OK},
    {"ffmpeg DESCRIBE", S("DESCRIBE rtsp://10.1.0.2:8554/test RTSP/1.0\r\nAccept: application/sdp\r\nCSeq: 2\r\nUser-Agent: Lavf59.27.100\r\n\r\n"), RTSP_P_OK},
    {"SETUP with Transport", S("SETUP rtsp://s/test/stream=0 RTSP/1.0\r\nTransport: RTP/AVP/UDP;unicast;client_port=5000-5001\r\nCSeq: 3\r\n\r\n"), RTSP_P_OK},
    {"reply with body", S("RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\nContent-Length: 120\r\n\r\n"), RTSP_P_OK},
    {"RTSP/2.0 request", S("OPTIONS * RTSP/2.0\r\nCSeq: 1\r\n\r\n"), RTSP_P_OK},
    {"empty reason", S("RTSP/1.0 200 \r\nCSeq: 5\r\n\r\n"), RTSP_P_OK},
    {"8-bit in a header value", S("RTSP/1.0 200 OK\r\nCSeq: 5\r\nServer: caf\xc3\xa9\r\n\r\n"), RTSP_P_OK},
    {"blank around value", S("PLAY rtsp://s/t RTSP/1.0\r\nCSeq:\t 7 \r\nSession:  ab12\r\n\r\n"), RTSP_P_OK},
    /* header abuse */
    {"bare LF", S("OPTIONS * RTSP/1.0\nCSeq: 1\r\n\r\n"), RTSP_P_BARE_LF},
    {"bare CR", S("OPTIONS * RTSP/1.0\r\nCSeq: 1\rX: y\r\n\r\n"), RTSP_P_BARE_CR},
    {"NUL", S("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX: a\0b\r\n\r\n"), RTSP_P_NUL},
    {"control byte", S("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX: a\x1b b\r\n\r\n"), RTSP_P_CONTROL},
    {"folded Transport", S("SETUP rtsp://s/t RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;unicast;\r\n client_port=5000-5001\r\n\r\n"), RTSP_P_FOLDED},
    {"Content-Length -1", S("ANNOUNCE rtsp://s/t RTSP/1.0\r\nCSeq: 3\r\nContent-Length: -1\r\n\r\n"), RTSP_P_CONTENT_LENGTH},
    {"Content-Length 10^12", S("ANNOUNCE rtsp://s/t RTSP/1.0\r\nCSeq: 3\r\nContent-Length: 1000000000000\r\n\r\n"), RTSP_P_CONTENT_LENGTH},
    {"Content-Length over the bound", S("ANNOUNCE rtsp://s/t RTSP/1.0\r\nCSeq: 3\r\nContent-Length: 262145\r\n\r\n"), RTSP_P_CONTENT_LENGTH},
    {"Content-Length twice", S("ANNOUNCE rtsp://s/t RTSP/1.0\r\nContent-Length: 0\r\nCSeq: 3\r\nContent-Length: 5\r\n\r\n"), RTSP_P_DUPLICATE},
    {"Transport twice", S("SETUP rtsp://s/t RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\ntransport: RTP/AVP;unicast;client_port=6000-6001\r\n\r\n"), RTSP_P_DUPLICATE},
    {"CSeq twice", S("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nCSeq: 2\r\n\r\n"), RTSP_P_DUPLICATE},
    {"CSeq not a number", S("OPTIONS * RTSP/1.0\r\nCSeq: one\r\n\r\n"), RTSP_P_HEADER},
    {"header without colon", S("OPTIONS * RTSP/1.0\r\nCSeq 1\r\n\r\n"), RTSP_P_HEADER},
    {"space before colon", S("OPTIONS * RTSP/1.0\r\nCSeq : 1\r\n\r\n"), RTSP_P_HEADER},
    {"HTTP version", S("OPTIONS * HTTP/1.1\r\nCSeq: 1\r\n\r\n"), RTSP_P_START_LINE},
    {"RTSP/1.1", S("OPTIONS * RTSP/1.1\r\nCSeq: 1\r\n\r\n"), RTSP_P_VERSION},
    {"reply RTSP/3.0", S("RTSP/3.0 200 OK\r\nCSeq: 1\r\n\r\n"), RTSP_P_VERSION},
    {"two spaces", S("OPTIONS  * RTSP/1.0\r\nCSeq: 1\r\n\r\n"), RTSP_P_START_LINE},
    {"no URI", S("OPTIONS RTSP/1.0\r\nCSeq: 1\r\n\r\n"), RTSP_P_START_LINE},
    {"8-bit URI", S("DESCRIBE rtsp://s/\xff RTSP/1.0\r\nCSeq: 1\r\n\r\n"), RTSP_P_START_LINE},
    {"status code letters", S("RTSP/1.0 2x0 OK\r\nCSeq: 1\r\n\r\n"), RTSP_P_START_LINE},
    {"status code 099", S("RTSP/1.0 099 OK\r\nCSeq: 1\r\n\r\n"), RTSP_P_START_LINE},
    {"no end", S("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n"), RTSP_P_START_LINE},
};

START_TEST(head_table)
{
    const head_case *c = &head_cases[_i];
    rtsp_msg m;
    rtsp_status st = rtsp_parse_head(c->head, c->len, &m);
    ck_assert_msg(st == c->want, "%s: got %d (%s), want %d (%s)", c->what, st, rtsp_status_text(st), c->want,
                  rtsp_status_text(c->want));
}
END_TEST

START_TEST(head_values)
{
    static const char h[] = "SETUP rtsp://10.1.0.2:8554/test/stream=0 RTSP/1.0\r\nCSeq: 3\r\n"
                            "Transport: RTP/AVP;unicast;client_port=5000-5001\r\nSession: 1f2e3d;timeout=60\r\n\r\n";
    rtsp_msg m;
    ck_assert_int_eq(rtsp_parse_head(h, sizeof h - 1, &m), RTSP_P_OK);
    ck_assert(!m.response);
    ck_assert_int_eq(m.version, 10);
    ck_assert(rtsp_is_method(&m, "SETUP"));
    ck_assert(!rtsp_is_method(&m, "setup")); /* methods are case-sensitive */
    ck_assert_int_eq((int)m.uri_len, (int)strlen("rtsp://10.1.0.2:8554/test/stream=0"));
    ck_assert(memcmp(m.uri, "rtsp://10.1.0.2:8554/test/stream=0", m.uri_len) == 0);
    ck_assert_int_eq((int)m.n_headers, 3);
    ck_assert_int_eq(m.cseq, 0);
    ck_assert_int_eq(m.transport, 1);
    ck_assert_int_eq(m.session, 2);
    ck_assert_int_eq((int)m.headers[2].value_len, (int)strlen("1f2e3d;timeout=60"));
    ck_assert_uint_eq(m.content_length, 0);

    static const char r[] = "RTSP/2.0 461 Unsupported Transport\r\nCSeq: 3\r\nContent-Length: 262144\r\n\r\n";
    ck_assert_int_eq(rtsp_parse_head(r, sizeof r - 1, &m), RTSP_P_OK);
    ck_assert(m.response);
    ck_assert_int_eq(m.version, 20);
    ck_assert_int_eq(m.code, 461);
    ck_assert_uint_eq(m.content_length, RTSP_BODY_MAX);
}
END_TEST

START_TEST(head_limits)
{
    /* RTSP_HEADERS_MAX headers pass, one more is refused */
    char *h = malloc(RTSP_HEAD_MAX + 64);
    ck_assert_ptr_nonnull(h);
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = (size_t)sprintf(h, "OPTIONS * RTSP/1.0\r\n");
        for (int i = 0; i < RTSP_HEADERS_MAX + extra; i++)
            n += (size_t)sprintf(h + n, "X-%d: v\r\n", i);
        n += (size_t)sprintf(h + n, "\r\n");
        rtsp_msg m;
        ck_assert_int_eq(rtsp_parse_head(h, n, &m), extra ? RTSP_P_TOO_MANY_HEADERS : RTSP_P_OK);
    }
    /* a head of exactly RTSP_HEAD_MAX bytes passes; one more byte is refused */
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = (size_t)sprintf(h, "OPTIONS * RTSP/1.0\r\nX: ");
        size_t fill = RTSP_HEAD_MAX - n - 4 + (size_t)extra;
        memset(h + n, 'a', fill);
        n += fill;
        memcpy(h + n, "\r\n\r\n", 4);
        n += 4;
        ck_assert_uint_eq(n, RTSP_HEAD_MAX + (size_t)extra);
        rtsp_msg m;
        ck_assert_int_eq(rtsp_parse_head(h, n, &m), extra ? RTSP_P_HEAD_TOO_LONG : RTSP_P_OK);
    }
    free(h);
}
END_TEST

/* ---- framing ------------------------------------------------------------------------------ */

/* Feeds @p in in pieces of @p step bytes and writes what comes out as a trace: "H<n>" for a
   head of n bytes, the passed bytes themselves after "P", and "E<status>" for an error. The
   concatenation of heads and passed bytes must give the input back. */
static size_t trace(const uint8_t *in, size_t len, size_t step, char *out, size_t cap, uint8_t *echo,
                    size_t *echo_len)
{
    rtsp_stream *s = malloc(sizeof *s);
    ck_assert_ptr_nonnull(s);
    rtsp_stream_init(s);
    size_t o = 0;
    *echo_len = 0;
    for (size_t off = 0; off < len;) {
        size_t chunk = len - off < step ? len - off : step;
        const uint8_t *p = in + off;
        size_t left = chunk;
        int guard = 0;
        while (left > 0) {
            ck_assert_int_lt(guard++, 100000);
            rtsp_event ev;
            const uint8_t *pass;
            size_t pass_len;
            size_t used = rtsp_stream_feed(s, p, left, &ev, &pass, &pass_len);
            ck_assert_uint_le(used, left);
            if (ev == RTSP_EV_HEAD) {
                o += (size_t)snprintf(out + o, cap - o, "H%zu;", s->head_len);
                memcpy(echo + *echo_len, s->head, s->head_len);
                *echo_len += s->head_len;
            } else if (ev == RTSP_EV_PASS) {
                o += (size_t)snprintf(out + o, cap - o, "P%zu;", pass_len);
                memcpy(echo + *echo_len, pass, pass_len);
                *echo_len += pass_len;
            } else if (ev == RTSP_EV_ERROR) {
                o += (size_t)snprintf(out + o, cap - o, "E%d;", s->error);
                free(s);
                return o;
            } else {
                ck_assert_uint_eq(used, left); /* MORE: everything was taken */
            }
            p += used;
            left -= used;
        }
        off += chunk;
    }
    free(s);
    return o;
}

/* Passes are coalesced for comparison: a body split across calls comes out in pieces. */
static void coalesce(char *t)
{
    char res[1024];
    size_t w = 0, pending = 0;
    for (const char *r = t; *r;) {
        char kind = *r++;
        const char *semi = strchr(r, ';');
        ck_assert_ptr_nonnull(semi);
        if (kind == 'P') {
            pending += (size_t)strtoul(r, NULL, 10);
        } else {
            if (pending)
                w += (size_t)snprintf(res + w, sizeof res - w, "P%zu;", pending);
            pending = 0;
            w += (size_t)snprintf(res + w, sizeof res - w, "%c%.*s;", kind, (int)(semi - r), r);
        }
        ck_assert_uint_lt(w, sizeof res);
        r = semi + 1;
    }
    if (pending)
        w += (size_t)snprintf(res + w, sizeof res - w, "P%zu;", pending);
    ck_assert_uint_lt(w, sizeof res);
    memcpy(t, res, w + 1);
}

static const char stream_in[] =
    "OPTIONS rtsp://s/t RTSP/1.0\r\nCSeq: 1\r\n\r\n"
    "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 11\r\n\r\nv=0\r\ns=x\r\n\r"
    "$\x00\x00\x20" "SETUP rtsp://evil/x RTSP/1.0\r\n\r\n" /* 32 bytes of interleaved payload, never parsed */
    "$\x01\x00\x00"                                           /* an empty frame */
    "\r\n"                                                    /* a keep-alive line */
    "PLAY rtsp://s/t RTSP/1.0\r\nCSeq: 3\r\nSession: 1f\r\n\r\n";

START_TEST(framing_split_anywhere)
{
    size_t len = sizeof stream_in - 1;
    char whole[512], piece[512];
    uint8_t echo[512];
    size_t echo_len;
    trace((const uint8_t *)stream_in, len, len, whole, sizeof whole, echo, &echo_len);
    coalesce(whole);
    /* the OPTIONS; the reply head, then passed untouched: its 11-byte body, frame 0's header and
       32 bytes, frame 1's header; the PLAY. The request inside frame 0 is not a head. */
    ck_assert_str_eq(whole, "H40;H48;P51;H50;");
    /* the keep-alive CRLF is the only thing not given back */
    ck_assert_uint_eq(echo_len, len - 2);
    for (size_t step = 1; step < len; step++) {
        trace((const uint8_t *)stream_in, len, step, piece, sizeof piece, echo, &echo_len);
        coalesce(piece);
        ck_assert_msg(strcmp(piece, whole) == 0, "step %zu: %s", step, piece);
        ck_assert_uint_eq(echo_len, len - 2);
    }
}
END_TEST

START_TEST(framing_errors)
{
    char t[256];
    uint8_t echo[RTSP_HEAD_MAX + 64];
    size_t echo_len;
    /* a bare LF is answered as soon as it arrives, not at the end of the head */
    static const char lf[] = "OPTIONS * RTSP/1.0\nCSeq: 1\r\n\r\n";
    trace((const uint8_t *)lf, sizeof lf - 1, 1, t, sizeof t, echo, &echo_len);
    ck_assert_str_eq(t, "E2;"); /* RTSP_P_BARE_LF */
    /* a body's length is consumed exactly: a request smuggled after a short body is a head */
    static const char smug[] = "ANNOUNCE rtsp://s/t RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 4\r\n\r\n"
                               "abcdTEARDOWN rtsp://s/t RTSP/1.0\r\nCSeq: 2\r\n\r\n";
    trace((const uint8_t *)smug, sizeof smug - 1, 3, t, sizeof t, echo, &echo_len);
    coalesce(t);
    ck_assert_str_eq(t, "H60;P4;H41;");
    /* a head that never ends is refused when it passes RTSP_HEAD_MAX, and the stream stays dead */
    uint8_t *big = malloc(RTSP_HEAD_MAX + 64);
    ck_assert_ptr_nonnull(big);
    memcpy(big, "OPTIONS * RTSP/1.0\r\nX: ", 23);
    memset(big + 23, 'a', RTSP_HEAD_MAX + 40);
    trace(big, RTSP_HEAD_MAX + 63, 1000, t, sizeof t, echo, &echo_len);
    char want[16];
    snprintf(want, sizeof want, "E%d;", RTSP_P_HEAD_TOO_LONG);
    ck_assert_str_eq(t, want);
    free(big);
    rtsp_stream s;
    rtsp_stream_init(&s);
    rtsp_event ev;
    const uint8_t *pass;
    size_t pass_len;
    ck_assert_uint_eq(rtsp_stream_feed(&s, (const uint8_t *)"X\x01", 2, &ev, &pass, &pass_len), 2);
    ck_assert_int_eq(ev, RTSP_EV_ERROR);
    ck_assert_int_eq(s.error, RTSP_P_CONTROL);
    ck_assert_uint_eq(rtsp_stream_feed(&s, (const uint8_t *)"OPTIONS", 7, &ev, &pass, &pass_len), 0);
    ck_assert_int_eq(ev, RTSP_EV_ERROR);
}
END_TEST

/* ---- Transport ---------------------------------------------------------------------------- */

static void sa4(struct sockaddr_storage *ss, const char *ip)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *s = (struct sockaddr_in *)ss;
    s->sin_family = AF_INET;
    ck_assert_int_eq(inet_pton(AF_INET, ip, &s->sin_addr), 1);
}

static void sa6(struct sockaddr_storage *ss, const char *ip)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
    s->sin6_family = AF_INET6;
    ck_assert_int_eq(inet_pton(AF_INET6, ip, &s->sin6_addr), 1);
}

typedef struct req_case {
    const char *what;
    const char *transport;
    rtsp_status parse; /* rtsp_parse_transport */
    rtsp_status check; /* rtsp_check_request_spec on the first spec, client 10.0.0.5 */
} req_case;

static const req_case req_cases[] = {
    {"gst udp", "RTP/AVP;unicast;client_port=5000-5001", RTSP_P_OK, RTSP_P_OK},
    {"ffmpeg udp", "RTP/AVP/UDP;unicast;client_port=21420-21421", RTSP_P_OK, RTSP_P_OK},
    {"vlc with mode", "RTP/AVP;unicast;client_port=52000-52001;mode=\"PLAY,RECORD\"", RTSP_P_OK, RTSP_P_OK},
    {"tcp interleaved", "RTP/AVP/TCP;unicast;interleaved=0-1", RTSP_P_OK, RTSP_P_OK},
    {"tcp, server picks channels", "RTP/AVP/TCP;unicast", RTSP_P_OK, RTSP_P_OK},
    {"destination is the client", "RTP/AVP;unicast;destination=10.0.0.5;client_port=5000-5001", RTSP_P_OK, RTSP_P_OK},
    {"bare destination", "RTP/AVP;unicast;destination;client_port=5000-5001", RTSP_P_OK, RTSP_P_OK},
    {"several specs", "RTP/AVP;unicast;client_port=5000-5001, RTP/AVP/TCP;unicast;interleaved=0-1", RTSP_P_OK, RTSP_P_OK},
    {"profile AVPF", "RTP/AVPF;unicast;client_port=5000-5001", RTSP_P_OK, RTSP_P_OK},
    /* row: third-party destination */
    {"destination third party", "RTP/AVP;unicast;destination=192.0.2.99;client_port=5000-5001", RTSP_P_OK, RTSP_P_DESTINATION},
    {"destination by name", "RTP/AVP;unicast;destination=evil.example;client_port=5000-5001", RTSP_P_OK, RTSP_P_DESTINATION},
    /* row: privileged, odd and huge ranges */
    {"privileged", "RTP/AVP;unicast;client_port=22-23", RTSP_P_OK, RTSP_P_PORT_PRIVILEGED},
    {"odd lowest", "RTP/AVP;unicast;client_port=5001-5002", RTSP_P_OK, RTSP_P_PORT_RANGE},
    {"huge range", "RTP/AVP;unicast;client_port=5000-9000", RTSP_P_OK, RTSP_P_PORT_RANGE},
    {"reversed", "RTP/AVP;unicast;client_port=5002-5000", RTSP_P_OK, RTSP_P_PORT_RANGE},
    {"past 65535", "RTP/AVP;unicast;client_port=65535-65536", RTSP_P_TRANSPORT, RTSP_P_OK},
    {"top pair", "RTP/AVP;unicast;client_port=65534-65535", RTSP_P_OK, RTSP_P_OK},
    {"single port", "RTP/AVP;unicast;client_port=5000", RTSP_P_OK, RTSP_P_PORT_RANGE},
    {"no client_port", "RTP/AVP;unicast", RTSP_P_OK, RTSP_P_NO_CLIENT_PORT},
    {"multicast", "RTP/AVP;multicast;destination=232.1.1.1;port=5000-5001", RTSP_P_OK, RTSP_P_MULTICAST},
    {"channels not consecutive", "RTP/AVP/TCP;unicast;interleaved=0-5", RTSP_P_OK, RTSP_P_INTERLEAVED},
    /* syntax */
    {"channel 256", "RTP/AVP/TCP;interleaved=256-257", RTSP_P_TRANSPORT, RTSP_P_OK},
    {"port letters", "RTP/AVP;unicast;client_port=50x0-5001", RTSP_P_TRANSPORT, RTSP_P_OK},
    {"port sign", "RTP/AVP;unicast;client_port=-5000", RTSP_P_TRANSPORT, RTSP_P_OK},
    {"client_port twice", "RTP/AVP;unicast;client_port=5000-5001;client_port=6000-6001", RTSP_P_TRANSPORT, RTSP_P_OK},
    {"unicast and multicast", "RTP/AVP;unicast;multicast;client_port=5000-5001", RTSP_P_TRANSPORT, RTSP_P_OK},
    {"not RTP", "MP2T/H2221/UDP;unicast;client_port=5000-5001", RTSP_P_TRANSPORT, RTSP_P_OK},
    {"lower transport SCTP", "RTP/AVP/SCTP;unicast;client_port=5000-5001", RTSP_P_TRANSPORT, RTSP_P_OK},
    {"empty parameter", "RTP/AVP;;client_port=5000-5001", RTSP_P_TRANSPORT, RTSP_P_OK},
    {"empty value", "RTP/AVP;unicast;client_port=", RTSP_P_TRANSPORT, RTSP_P_OK},
    {"unterminated quote", "RTP/AVP;unicast;mode=\"PLAY", RTSP_P_TRANSPORT, RTSP_P_OK},
    {"empty spec", "RTP/AVP;unicast;client_port=5000-5001,", RTSP_P_TRANSPORT, RTSP_P_OK},
    {"nine specs", "RTP/AVP,RTP/AVP,RTP/AVP,RTP/AVP,RTP/AVP,RTP/AVP,RTP/AVP,RTP/AVP,RTP/AVP", RTSP_P_TOO_MANY_SPECS, RTSP_P_OK},
};

START_TEST(request_table)
{
    const req_case *c = &req_cases[_i];
    rtsp_transport specs[RTSP_TRANSPORTS_MAX];
    size_t n;
    rtsp_status st = rtsp_parse_transport(c->transport, strlen(c->transport), specs, &n);
    ck_assert_msg(st == c->parse, "%s: parse %s, want %s", c->what, rtsp_status_text(st), rtsp_status_text(c->parse));
    if (st != RTSP_P_OK)
        return;
    struct sockaddr_storage client;
    sa4(&client, "10.0.0.5");
    st = rtsp_check_request_spec(&specs[0], (struct sockaddr *)&client);
    ck_assert_msg(st == c->check, "%s: check %s, want %s", c->what, rtsp_status_text(st), rtsp_status_text(c->check));
    if (st != RTSP_P_OK)
        ck_assert_int_eq(rtsp_status_code(st), 461); /* every Transport refusal is a 461 */
}
END_TEST

START_TEST(transport_values)
{
    static const char v[] = "RTP/AVP;unicast;client_port=5000-5001;mode=\"PLAY,RECORD\", RTP/AVP/TCP;unicast;interleaved=2-3";
    rtsp_transport t[RTSP_TRANSPORTS_MAX];
    size_t n;
    ck_assert_int_eq(rtsp_parse_transport(v, sizeof v - 1, t, &n), RTSP_P_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert(!t[0].tcp);
    ck_assert(!t[0].multicast);
    ck_assert_int_eq(t[0].n_client_port, 2);
    ck_assert_uint_eq(t[0].client_port[0], 5000);
    ck_assert_uint_eq(t[0].client_port[1], 5001);
    ck_assert_uint_eq(t[0].n_params, 3);
    ck_assert_uint_eq(t[0].params[2].value_len, strlen("\"PLAY,RECORD\""));
    ck_assert(t[1].tcp);
    ck_assert_int_eq(t[1].n_interleaved, 2);
    ck_assert_uint_eq(t[1].interleaved[0], 2);
    ck_assert_int_eq(t[1].destination, -1);
}
END_TEST

typedef struct reply_case {
    const char *what;
    const char *reply;
    rtsp_status want;
    size_t which;
} reply_case;

static const reply_case reply_cases[] = {
    {"gst reply", "RTP/AVP;unicast;client_port=5000-5001;server_port=6970-6971;ssrc=1A2B3C4D;mode=\"PLAY\"", RTSP_P_OK, 0},
    {"reply picks tcp", "RTP/AVP/TCP;unicast;interleaved=0-1", RTSP_P_OK, 1},
    {"source is the server", "RTP/AVP;unicast;client_port=5000-5001;source=10.1.0.2;server_port=6970-6971", RTSP_P_OK, 0},
    /* row: decoys: a reply for ports the request did not offer */
    {"other client_port", "RTP/AVP;unicast;client_port=7000-7001;server_port=6970-6971", RTSP_P_REPLY_MISMATCH, 0},
    {"other channels", "RTP/AVP/TCP;unicast;interleaved=4-5", RTSP_P_REPLY_MISMATCH, 0},
    /* row: server-side bounce */
    {"source third party", "RTP/AVP;unicast;client_port=5000-5001;source=192.0.2.99;server_port=6970-6971", RTSP_P_SOURCE, 0},
    {"privileged server_port", "RTP/AVP;unicast;client_port=5000-5001;server_port=22-23", RTSP_P_PORT_PRIVILEGED, 0},
    {"odd server_port", "RTP/AVP;unicast;client_port=5000-5001;server_port=6971-6972", RTSP_P_PORT_RANGE, 0},
    {"multicast reply", "RTP/AVP;multicast;client_port=5000-5001", RTSP_P_MULTICAST, 0},
};

START_TEST(reply_table)
{
    const reply_case *c = &reply_cases[_i];
    static const char req[] = "RTP/AVP;unicast;client_port=5000-5001,RTP/AVP/TCP;unicast;interleaved=0-1";
    rtsp_transport q[RTSP_TRANSPORTS_MAX], r[RTSP_TRANSPORTS_MAX];
    size_t nq, nr, which = 99;
    ck_assert_int_eq(rtsp_parse_transport(req, sizeof req - 1, q, &nq), RTSP_P_OK);
    ck_assert_int_eq(rtsp_parse_transport(c->reply, strlen(c->reply), r, &nr), RTSP_P_OK);
    ck_assert_uint_eq(nr, 1);
    struct sockaddr_storage server;
    sa4(&server, "10.1.0.2");
    rtsp_status st = rtsp_check_reply_spec(&r[0], q, nq, (struct sockaddr *)&server, &which);
    ck_assert_msg(st == c->want, "%s: %s, want %s", c->what, rtsp_status_text(st), rtsp_status_text(c->want));
    if (st == RTSP_P_OK)
        ck_assert_uint_eq(which, c->which);
    else
        ck_assert_uint_eq(which, 99); /* untouched on a refusal */
}
END_TEST

START_TEST(address_forms)
{
    rtsp_transport t[RTSP_TRANSPORTS_MAX];
    size_t n;
    struct sockaddr_storage c;
    static const char v6[] = "RTP/AVP;unicast;destination=[2001:db8::5];client_port=5000-5001";
    ck_assert_int_eq(rtsp_parse_transport(v6, sizeof v6 - 1, t, &n), RTSP_P_OK);
    sa6(&c, "2001:db8::5");
    ck_assert_int_eq(rtsp_check_request_spec(&t[0], (struct sockaddr *)&c), RTSP_P_OK);
    sa6(&c, "2001:db8::6");
    ck_assert_int_eq(rtsp_check_request_spec(&t[0], (struct sockaddr *)&c), RTSP_P_DESTINATION);
    sa4(&c, "10.0.0.5");
    ck_assert_int_eq(rtsp_check_request_spec(&t[0], (struct sockaddr *)&c), RTSP_P_DESTINATION);
    static const char mapped[] = "RTP/AVP;unicast;destination=10.0.0.5;client_port=5000-5001";
    ck_assert_int_eq(rtsp_parse_transport(mapped, sizeof mapped - 1, t, &n), RTSP_P_OK);
    sa6(&c, "::ffff:10.0.0.5");
    ck_assert_int_eq(rtsp_check_request_spec(&t[0], (struct sockaddr *)&c), RTSP_P_OK);
    sa6(&c, "::ffff:10.0.0.6");
    ck_assert_int_eq(rtsp_check_request_spec(&t[0], (struct sockaddr *)&c), RTSP_P_DESTINATION);
}
END_TEST

/* ---- formatters --------------------------------------------------------------------------- */

START_TEST(format_transport)
{
    static const char v[] = "RTP/AVP;unicast;destination=10.0.0.5;client_port=5000-5001;mode=\"PLAY\"";
    rtsp_transport t[RTSP_TRANSPORTS_MAX];
    size_t n;
    char out[RTSP_TRANSPORT_TEXT_MAX];
    ck_assert_int_eq(rtsp_parse_transport(v, sizeof v - 1, t, &n), RTSP_P_OK);
    rtsp_rewrite rw = {.client_port = 40000, .destination = "10.1.0.1"};
    size_t len = rtsp_fmt_transport(out, sizeof out, &t[0], &rw);
    ck_assert_str_eq(out, "RTP/AVP;unicast;destination=10.1.0.1;client_port=40000-40001;mode=\"PLAY\"");
    ck_assert_uint_eq(len, strlen(out));
    rtsp_rewrite drop = {.drop_destination = true};
    rtsp_fmt_transport(out, sizeof out, &t[0], &drop);
    ck_assert_str_eq(out, "RTP/AVP;unicast;client_port=5000-5001;mode=\"PLAY\"");
    /* it re-parses to what it says */
    rtsp_transport again[RTSP_TRANSPORTS_MAX];
    ck_assert_int_eq(rtsp_parse_transport(out, strlen(out), again, &n), RTSP_P_OK);
    ck_assert_uint_eq(again[0].client_port[0], 5000);
    /* never past the buffer: every size up to the needed one fails cleanly */
    rtsp_fmt_transport(out, sizeof out, &t[0], &rw);
    size_t need = strlen(out) + 1;
    for (size_t cap = 0; cap < need; cap++) {
        char *small = malloc(cap + 1);
        ck_assert_ptr_nonnull(small);
        small[cap] = 'Z';
        ck_assert_uint_eq(rtsp_fmt_transport(small, cap, &t[0], &rw), 0);
        ck_assert_int_eq(small[cap], 'Z');
        free(small);
    }
    ck_assert_uint_eq(rtsp_fmt_transport(out, need, &t[0], &rw), need - 1);
}
END_TEST

START_TEST(format_error)
{
    static const char h[] = "SETUP rtsp://s/t RTSP/1.0\r\nCSeq: 42\r\n\r\n";
    rtsp_msg m;
    char out[128];
    ck_assert_int_eq(rtsp_parse_head(h, sizeof h - 1, &m), RTSP_P_OK);
    rtsp_fmt_error(out, sizeof out, 461, &m);
    ck_assert_str_eq(out, "RTSP/1.0 461 Unsupported Transport\r\nCSeq: 42\r\n\r\n");
    rtsp_fmt_error(out, sizeof out, 400, NULL);
    ck_assert_str_eq(out, "RTSP/1.0 400 Bad Request\r\n\r\n");
    ck_assert_uint_eq(rtsp_fmt_error(out, 10, 400, NULL), 0);
    ck_assert_str_eq(out, "");
    /* the answer parses as a response */
    rtsp_fmt_error(out, sizeof out, 461, &m);
    rtsp_msg r;
    ck_assert_int_eq(rtsp_parse_head(out, strlen(out), &r), RTSP_P_OK);
    ck_assert(r.response);
    ck_assert_int_eq(r.code, 461);
}
END_TEST

/* The filter's SETUP path: the head goes on with only its Transport value replaced. */
START_TEST(format_head)
{
    static const char h[] = "SETUP rtsp://10.1.0.2:8554/test/stream=0 RTSP/1.0\r\nCSeq: 3\r\n"
                            "Transport:  RTP/AVP;unicast;client_port=5000-5001 \r\nUser-Agent: Lavf59\r\n\r\n";
    static const char tr[] = "RTP/AVP;unicast;client_port=40000-40001";
    rtsp_msg m;
    char out[RTSP_HEAD_MAX + 1];
    ck_assert_int_eq(rtsp_parse_head(h, sizeof h - 1, &m), RTSP_P_OK);
    size_t n = rtsp_fmt_head(out, sizeof out, h, sizeof h - 1, &m, tr, sizeof tr - 1);
    ck_assert_str_eq(out, "SETUP rtsp://10.1.0.2:8554/test/stream=0 RTSP/1.0\r\nCSeq: 3\r\n"
                          "Transport: RTP/AVP;unicast;client_port=40000-40001\r\nUser-Agent: Lavf59\r\n\r\n");
    ck_assert_uint_eq(n, strlen(out));
    rtsp_msg again;
    ck_assert_int_eq(rtsp_parse_head(out, n, &again), RTSP_P_OK);
    ck_assert_int_eq(again.transport, m.transport);
    /* a value with a line break would smuggle a header: refused */
    ck_assert_uint_eq(rtsp_fmt_head(out, sizeof out, h, sizeof h - 1, &m, "RTP/AVP\r\nX: y", 14), 0);
    ck_assert_str_eq(out, "");
    /* too small a buffer: nothing, never past it */
    for (size_t cap = 0; cap <= n; cap++) {
        char *small = malloc(cap + 1);
        ck_assert_ptr_nonnull(small);
        small[cap] = 'Z';
        ck_assert_uint_eq(rtsp_fmt_head(small, cap, h, sizeof h - 1, &m, tr, sizeof tr - 1), 0);
        ck_assert_int_eq(small[cap], 'Z');
        free(small);
    }
    /* a head without Transport has nothing to replace */
    static const char o[] = "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n";
    ck_assert_int_eq(rtsp_parse_head(o, sizeof o - 1, &m), RTSP_P_OK);
    ck_assert_uint_eq(rtsp_fmt_head(out, sizeof out, o, sizeof o - 1, &m, tr, sizeof tr - 1), 0);
}
END_TEST

START_TEST(cseq_value)
{
    static const char h[] = "PLAY rtsp://s/t RTSP/1.0\r\nCSeq: 000123456\r\n\r\n";
    static const char none[] = "PLAY rtsp://s/t RTSP/1.0\r\nSession: 1\r\n\r\n";
    rtsp_msg m;
    uint32_t v = 7;
    ck_assert_int_eq(rtsp_parse_head(h, sizeof h - 1, &m), RTSP_P_OK);
    ck_assert(rtsp_msg_cseq(&m, &v));
    ck_assert_uint_eq(v, 123456);
    ck_assert_int_eq(rtsp_parse_head(none, sizeof none - 1, &m), RTSP_P_OK);
    ck_assert(!rtsp_msg_cseq(&m, &v));
    ck_assert_uint_eq(v, 123456);
}
END_TEST

/* The Session header the filter reads its timeout from (RFC 2326 12.37). */
typedef struct session_case {
    const char *value;
    bool ok;
    size_t id_len;
    uint32_t timeout;
} session_case;

static const session_case session_cases[] = {
    {"4242", true, 4, 0},
    {"4242;timeout=60", true, 4, 60},
    {"Abc.$-_+9;timeout=2", true, 9, 2},
    {"4242; timeout=5", true, 4, 5},
    {"4242;TimeOut=7", true, 4, 7},
    {"4242;foo=bar;timeout=3", true, 4, 3},
    {"4242;timeout=3;foo", true, 4, 3},
    {"4242;timeout=999999999", true, 4, 999999999u},
    {"", false, 0, 0},
    {";timeout=60", false, 0, 0},
    {"42 42;timeout=60", false, 0, 0},
    {"4242;timeout=0", false, 4, 0},
    {"4242;timeout=-1", false, 4, 0},
    {"4242;timeout=1000000000", false, 4, 0},
    {"4242;timeout=", false, 4, 0},
    {"4242;timeout", false, 4, 0},
    {"4242;timeout=6;timeout=7", false, 4, 0},
    {"4242;timeout=6x", false, 4, 0},
    {"4242;", false, 4, 0},
    {"4242;;timeout=5", false, 4, 0},
    {"4242;timeout=5 x", false, 4, 0},
};

START_TEST(session_table)
{
    const session_case *c = &session_cases[_i];
    size_t id_len = 99;
    uint32_t timeout = 99;
    bool ok = rtsp_parse_session(c->value, strlen(c->value), &id_len, &timeout);
    ck_assert_msg(ok == c->ok, "\"%s\": %d, want %d", c->value, ok, c->ok);
    if (c->ok)
        ck_assert_uint_eq(id_len, c->id_len);
    ck_assert_msg(timeout == c->timeout, "\"%s\": timeout %u, want %u", c->value, timeout, c->timeout);
    /* an id of exactly RTSP_SESSION_ID_MAX passes, one more does not */
    char big[RTSP_SESSION_ID_MAX + 2];
    memset(big, 'a', sizeof big);
    ck_assert(rtsp_parse_session(big, RTSP_SESSION_ID_MAX, &id_len, &timeout));
    ck_assert_uint_eq(id_len, RTSP_SESSION_ID_MAX);
    ck_assert(!rtsp_parse_session(big, RTSP_SESSION_ID_MAX + 1, &id_len, &timeout));
}
END_TEST

static Suite *rtsp_parse_suite(void)
{
    Suite *s = suite_create("rtsp_parse");
    TCase *tc = tcase_create("heads");
    tcase_add_loop_test(tc, head_table, 0, (int)(sizeof head_cases / sizeof head_cases[0]));
    tcase_add_test(tc, head_values);
    tcase_add_test(tc, head_limits);
    suite_add_tcase(s, tc);
    tc = tcase_create("framing");
    tcase_add_test(tc, framing_split_anywhere);
    tcase_add_test(tc, framing_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("transport");
    tcase_add_loop_test(tc, request_table, 0, (int)(sizeof req_cases / sizeof req_cases[0]));
    tcase_add_test(tc, transport_values);
    tcase_add_loop_test(tc, reply_table, 0, (int)(sizeof reply_cases / sizeof reply_cases[0]));
    tcase_add_test(tc, address_forms);
    suite_add_tcase(s, tc);
    tc = tcase_create("formatters");
    tcase_add_test(tc, format_transport);
    tcase_add_test(tc, format_error);
    tcase_add_test(tc, format_head);
    tcase_add_test(tc, cseq_value);
    suite_add_tcase(s, tc);
    tc = tcase_create("session");
    tcase_add_loop_test(tc, session_table, 0, (int)(sizeof session_cases / sizeof session_cases[0]));
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(rtsp_parse_suite()); }
