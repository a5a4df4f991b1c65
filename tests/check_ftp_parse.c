/*
 * fwx tests - the FTP filter's parser (plugins/ftp/ftp_parse.c), table-driven: every input of
 * the attack catalog's FTP rows (doc/security.md) that the parser decides (1, 3, 6, 7, 9, 11, 12, 13, 15, 18,
 * 19, 21) with its exact outcome, and every stream fed whole, split at every point and split at
 * random points, with the same transcript required each time (row 14).
 *
 * The transcript is what a client's line would become at the parser's level: "ok PORT
 * 10.0.0.8:1025", "501 syntax error", "500 bounce to a third party", "line bare LF inside a
 * line", ... The filter (tests/check_ftp.c) turns the same decisions into replies and grants.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "ftp_parse.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a transcript of what the parser makes of a client stream ------------------------------ */

typedef struct transcript {
    char text[1 << 16];
    size_t len;
} transcript;

static void tr_add(transcript *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tr_add(transcript *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->text + t->len, sizeof t->text - t->len, fmt, ap);
    va_end(ap);
    ck_assert(n >= 0 && (size_t)n < sizeof t->text - t->len);
    t->len += (size_t)n;
}

static const char *sa_text(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(buf, cap, "%s:%u", ip, ntohs(in->sin_port));
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(buf, cap, "[%s]:%u", ip, ntohs(in6->sin6_port));
    }
    return buf;
}

/* The client: 10.0.0.8, an IPv4 session. */
static struct sockaddr_storage client_v4(void)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    in->sin_family = AF_INET;
    inet_pton(AF_INET, "10.0.0.8", &in->sin_addr);
    return ss;
}

static void on_cmd_line(void *arg, ftp_line_status st, const char *line, size_t len)
{
    transcript *t = arg;
    ftp_cmd cmd;
    struct sockaddr_storage a, client = client_v4();
    char buf[80];
    if (st != FTP_LINE_OK) {
        tr_add(t, "line %s\n", ftp_line_status_text(st));
        return;
    }
    if (!ftp_cmd_parse(line, len, &cmd)) {
        tr_add(t, "500 not a command\n");
        return;
    }
    bool port = strcmp(cmd.verb, "PORT") == 0, eprt = strcmp(cmd.verb, "EPRT") == 0;
    if (!port && !eprt) {
        bool refused = strcmp(cmd.verb, "LPRT") == 0 || strcmp(cmd.verb, "LPSV") == 0;
        tr_add(t, "%s %s%s%.*s\n", refused ? "502" : "pass", cmd.verb, cmd.arg ? " " : "", (int)cmd.arg_len,
               cmd.arg ? cmd.arg : "");
        return;
    }
    int np = 1;
    ftp_perr e = port ? ftp_parse_port(cmd.arg, cmd.arg_len, &a) : ftp_parse_eprt(cmd.arg, cmd.arg_len, &a, &np);
    if (e != FTP_P_OK) {
        tr_add(t, "%s %s\n", e == FTP_P_FAMILY ? "522" : "501", ftp_perr_text(e));
        return;
    }
    if (np != 1 || a.ss_family != AF_INET) {
        tr_add(t, "522 family\n");
        return;
    }
    const char *why = ftp_check_active((struct sockaddr *)&a, (struct sockaddr *)&client);
    if (why != NULL)
        tr_add(t, "500 %s\n", why);
    else
        tr_add(t, "ok %s %s\n", cmd.verb, sa_text(&a, buf, sizeof buf));
}

static void run_cmds(const uint8_t *p, size_t n, const size_t *cuts, size_t ncuts, transcript *t)
{
    ftp_lines l;
    ftp_lines_init(&l);
    t->len = 0;
    t->text[0] = '\0';
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        ftp_lines_feed(&l, p + at, end - at, on_cmd_line, t);
        at = end;
    }
    if (ftp_lines_partial(&l))
        tr_add(t, "(partial)\n");
}

/* Feeds a stream whole, split at every point, and split at 200 random sets of points; every
   transcript must equal the whole one (catalog #14). */
static void check_splits(const uint8_t *p, size_t n, const char *want)
{
    static transcript whole, part;
    run_cmds(p, n, NULL, 0, &whole);
    ck_assert_msg(strcmp(whole.text, want) == 0, "stream %.*s:\n got:\n%s want:\n%s", (int)(n > 60 ? 60 : n), p,
                  whole.text, want);
    for (size_t k = 1; k < n; k++) {
        size_t cut[1] = {k};
        run_cmds(p, n, cut, 1, &part);
        ck_assert_msg(strcmp(part.text, whole.text) == 0, "split at %zu differs:\n%s\nvs\n%s", k, part.text, whole.text);
    }
    unsigned seed = 12345;
    for (int r = 0; r < 200 && n > 2; r++) {
        size_t cuts[16], nc = 0, last = 0;
        size_t want_cuts = 1 + (size_t)(rand_r(&seed) % 15);
        for (size_t i = 0; i < want_cuts; i++) {
            size_t c = last + 1 + (size_t)rand_r(&seed) % (n - last);
            if (c >= n)
                break;
            cuts[nc++] = c;
            last = c;
        }
        run_cmds(p, n, cuts, nc, &part);
        ck_assert_msg(strcmp(part.text, whole.text) == 0, "random split %d differs", r);
    }
}

typedef struct cmd_case {
    const char *row;
    const char *input; /* NUL-free bytes; see len */
    size_t len;        /* 0: strlen(input) */
    const char *want;
} cmd_case;

#define S(x) x, sizeof(x) - 1

static const cmd_case cmd_cases[] = {
    /* row 1: bounce */
    {"1", S("PORT 192,0,2,99,0,25\r\n"), "500 bounce to a third party\n"},
    {"1", S("EPRT |1|192.0.2.99|25|\r\n"), "500 bounce to a third party\n"},
    /* the client's own, for contrast */
    {"ok", S("PORT 10,0,0,8,4,1\r\n"), "ok PORT 10.0.0.8:1025\n"},
    {"ok", S("port 10,0,0,8,31,144\r\n"), "ok PORT 10.0.0.8:8080\n"},
    {"ok", S("EPRT |1|10.0.0.8|8080|\r\n"), "ok EPRT 10.0.0.8:8080\n"},
    {"ok", S("EPRT !1!10.0.0.8!8080!\r\n"), "ok EPRT 10.0.0.8:8080\n"},
    /* row 3: privileged and zero ports */
    {"3", S("PORT 10,0,0,8,0,22\r\n"), "500 a privileged port\n"},
    {"3", S("PORT 10,0,0,8,0,0\r\n"), "500 port 0\n"},
    {"3", S("PORT 10,0,0,8,3,255\r\n"), "500 a privileged port\n"},
    {"3", S("PORT 10,0,0,8,4,0\r\n"), "ok PORT 10.0.0.8:1024\n"},
    {"3", S("EPRT |1|10.0.0.8|0|\r\n"), "501 number out of range\n"},
    /* row 4, the parts the parser knows (the gateway's own addresses are the core's) */
    {"4", S("PORT 0,0,0,0,31,144\r\n"), "500 the unspecified address\n"},
    {"4", S("PORT 255,255,255,255,31,144\r\n"), "500 the broadcast address\n"},
    {"4", S("PORT 224,0,0,1,31,144\r\n"), "500 a multicast address\n"},
    {"4", S("PORT 127,0,0,1,31,144\r\n"), "500 bounce to a third party\n"},
    /* row 6: accumulator overflow */
    {"6", S("PORT 10,0,0,8,4,4294967297\r\n"), "501 syntax error\n"},
    {"6", S("PORT 999999999999,0,0,8,4,1\r\n"), "501 syntax error\n"},
    {"6", S("PORT 10,0,0,8,4,256\r\n"), "501 number out of range\n"},
    {"6", S("PORT 10,0,0,8,1000,1\r\n"), "501 syntax error\n"},
    {"6", S("EPRT |1|10.0.0.8|65536|\r\n"), "501 number out of range\n"},
    {"6", S("EPRT |1|10.0.0.8|655360|\r\n"), "501 syntax error\n"},
    {"6", S("EPRT |1|10.0.0.256|8080|\r\n"), "501 syntax error\n"},
    /* row 7: sign, whitespace, field count, leading zeros */
    {"7", S("PORT 10,0,0,8,-1,1\r\n"), "501 syntax error\n"},
    {"7", S("PORT 10,0,0,8,+4,1\r\n"), "501 syntax error\n"},
    {"7", S("PORT 10, 0,0,8,4,1\r\n"), "501 syntax error\n"},
    {"7", S("PORT  10,0,0,8,4,1\r\n"), "501 syntax error\n"},
    {"7", S("PORT 10,0,0,8,4,1x\r\n"), "501 syntax error\n"},
    {"7", S("PORT 10,0,0,8,4\r\n"), "501 syntax error\n"},
    {"7", S("PORT 10,0,0,8,4,1,7\r\n"), "501 syntax error\n"},
    {"7", S("PORT 10,0,0,8,4,1 \r\n"), "501 syntax error\n"},
    {"7", S("PORT 010,0,0,8,4,1\r\n"), "501 syntax error\n"},
    {"7", S("PORT 10,0,0,8,04,1\r\n"), "501 syntax error\n"},
    {"7", S("PORT\r\n"), "501 syntax error\n"},
    {"7", S("PORT \r\n"), "501 syntax error\n"},
    {"7", S("PORT\t10,0,0,8,4,1\r\n"), "500 not a command\n"},
    {"7", S(" PORT 10,0,0,8,4,1\r\n"), "500 not a command\n"},
    {"7", S("PORTX 10,0,0,8,4,1\r\n"), "500 not a command\n"},
    {"7", S("\r\n"), "500 not a command\n"},
    /* row 12: EPRT edge cases, IPv4 session */
    {"12", S("EPRT |2|::1|8080|\r\n"), "522 family\n"},
    {"12", S("EPRT |2|::ffff:10.0.0.1|8080|\r\n"), "522 family\n"},
    {"12", S("EPRT |2|::ffff:10.0.0.8|8080|\r\n"), "522 family\n"},
    {"12", S("EPRT |2|fe80::1%eth0|8080|\r\n"), "501 IPv6 zone id\n"},
    {"12", S("EPRT |3|x|8080|\r\n"), "522 unknown network protocol\n"},
    {"12", S("EPRT 1|10.0.0.8|8080|\r\n"), "501 syntax error\n"},
    {"12", S("EPRT |1|10.0.0.8|8080\r\n"), "501 syntax error\n"},
    {"12", S("EPRT |1|10.0.0.8||\r\n"), "501 syntax error\n"},
    {"12", S("EPRT |1|10.0.0.8|8080||\r\n"), "501 syntax error\n"},
    {"12", S("EPRT |1|010.0.0.8|8080|\r\n"), "501 syntax error\n"},
    {"12", S("EPRT |1| 10.0.0.8|8080|\r\n"), "501 syntax error\n"},
    {"12", S("EPRT |1|10.0.0.8|08080|\r\n"), "501 syntax error\n"},
    {"12", S("EPRT 1110.0.0.818080|\r\n"), "501 syntax error\n"},
    {"12", S("EPRT |x|10.0.0.8|8080|\r\n"), "501 syntax error\n"},
    /* row 13: verbs the gateway does not check */
    {"13", S("LPRT 4,4,10,0,0,8,2,4,1\r\n"), "502 LPRT 4,4,10,0,0,8,2,4,1\n"},
    {"13", S("LPSV\r\n"), "502 LPSV\n"},
    {"13", S("lpsv\r\n"), "502 LPSV\n"},
    /* row 18: bare LF / CR smuggling; CRLF is the only terminator */
    {"18", S("CWD leetXXXX\nPORT 10,0,0,8,31,144\r\n"), "line bare LF inside a line\n"},
    {"18", S("CWD x\rPORT 10,0,0,8,31,144\r\n"), "line bare CR inside a line\n"},
    {"18", S("NOOP\n\r\n"), "line bare LF inside a line\n"},
    {"18", S("NOOP\r\r\n"), "line bare CR inside a line\n"},
    {"18", S("NOOP\r\n\nPORT 10,0,0,8,4,1\r\n"), "pass NOOP\nline bare LF inside a line\n"},
    /* row 19: NUL and 8-bit bytes */
    {"19", "PORT 10,0,0,8,4,1\0\r\n", 20, "line NUL byte inside a line\n"},
    {"19", "PO\0RT 10,0,0,8,4,1\r\n", 20, "line NUL byte inside a line\n"},
    {"19", S("PORT 10,0,0,8,4,1\xff\r\n"), "line 8-bit byte inside a line\n"},
    {"19", S("\xff\xf4\xff\xf2" "ABOR\r\n"), "line 8-bit byte inside a line\n"},
    {"19", S("NOOP\x01\r\n"), "line control byte inside a line\n"},
    {"19", S("NOOP\x7f\r\n"), "line control byte inside a line\n"},
    /* row 15: several commands per segment, each handled in order */
    {"15", S("NOOP\r\nPORT 192,0,2,99,0,25\r\nPORT 10,0,0,8,4,1\r\n"),
     "pass NOOP\n500 bounce to a third party\nok PORT 10.0.0.8:1025\n"},
    /* an unfinished line is not a line */
    {"14", S("PORT 10,0,0,8,4,1"), "(partial)\n"},
};

START_TEST(command_table)
{
    const cmd_case *c = &cmd_cases[_i];
    check_splits((const uint8_t *)c->input, c->len, c->want);
}
END_TEST

/* Row 21: overlong lines are refused at the limit, never buffered whole, and the line after
   them is handled normally. */
START_TEST(overlong_lines)
{
    static uint8_t buf[120000];
    size_t n = 0;
    memcpy(buf, "PORT ", 5);
    n = 5;
    memset(buf + n, '0', 100000);
    n += 100000;
    memcpy(buf + n, ",0,0,8,4,1\r\nNOOP\r\n", 18);
    n += 18;
    static transcript t;
    run_cmds(buf, n, NULL, 0, &t);
    ck_assert_str_eq(t.text, "line line longer than 512 bytes\npass NOOP\n");
    /* Split at a few hundred points (every point of 100 KB would take too long). */
    static transcript part;
    for (size_t k = 1; k < n; k += 397) {
        size_t cut[2] = {k, k + 1 < n ? k + 1 : k};
        run_cmds(buf, n, cut, 2, &part);
        ck_assert_str_eq(part.text, t.text);
    }
    /* 10 MB without LF: one refusal, nothing held beyond the fixed buffer. */
    ftp_lines l;
    ftp_lines_init(&l);
    size_t reported = 0;
    memset(buf, 'A', sizeof buf);
    for (int i = 0; i < 90; i++)
        reported += ftp_lines_feed(&l, buf, sizeof buf, on_cmd_line, &t);
    ck_assert_uint_eq(reported, 1);
    ck_assert(ftp_lines_partial(&l));
    ck_assert_uint_eq(l.len, 0);
    /* Exactly 512 bytes with CRLF is fine; 513 is not. */
    char line[600];
    memset(line, 'A', sizeof line);
    memcpy(line, "NOOP ", 5);
    memcpy(line + 510, "\r\n", 2);
    run_cmds((uint8_t *)line, 512, NULL, 0, &t);
    ck_assert_int_eq(strncmp(t.text, "pass NOOP ", 10), 0);
    memset(line, 'A', sizeof line);
    memcpy(line, "NOOP ", 5);
    memcpy(line + 511, "\r\n", 2);
    run_cmds((uint8_t *)line, 513, NULL, 0, &t);
    ck_assert_str_eq(t.text, "line line longer than 512 bytes\n");
}
END_TEST

/* ---- replies ---------------------------------------------------------------------------------- */

typedef struct reply_case {
    const char *row;
    const char *line; /* without CRLF */
    const char *want; /* "227 ip:port", "229 port", or "err <text>" */
} reply_case;

static const reply_case reply_cases[] = {
    /* row 9: 227 text variants (RFC 1123) */
    {"9", "227 Entering Passive Mode 198,51,100,7,200,10", "227 198.51.100.7:51210"},
    {"9", "227 =198,51,100,7,200,10", "227 198.51.100.7:51210"},
    {"9", "227 (212,27,40,254,15,161)", "227 212.27.40.254:4001"},
    {"9", "227 Entering Passive Mode (198,51,100,7,200,10).", "227 198.51.100.7:51210"},
    {"9", "227 Entering Passive Mode (198,051,100,007,200,010)", "227 198.51.100.7:51210"},
    /* row 2 / 3: the parser reads them; the filter refuses the host or port */
    {"2", "227 Entering Passive Mode (192,0,2,99,0,22)", "227 192.0.2.99:22"},
    {"3", "227 Entering Passive Mode (198,51,100,7,0,25)", "227 198.51.100.7:25"},
    /* row 6 and curl test237 */
    {"6", "227 Entering Passiv Mode (1216,256,2,127,127,127)", "err syntax error"},
    {"6", "227 Entering Passive Mode (198,51,100,7,256,10)", "err number out of range"},
    {"7", "227 Entering Passive Mode (198,51,100,7,200)", "err syntax error"},
    {"7", "227 Entering Passive Mode (198,51,100,7,200,10,7)", "err syntax error"},
    {"7", "227 Entering Passive Mode (198,51,100,7,200, 10)", "err syntax error"},
    {"7", "227 Entering Passive Mode (198,51,100,7,-200,10)", "err syntax error"},
    {"7", "227 Entering Passive Mode", "err syntax error"},
    /* row 11: 229 edge cases */
    {"11", "229 Entering Extended Passive Mode (|||6446|)", "229 6446"},
    {"11", "229 Entering Extended Passive Mode (!!!6446!)", "229 6446"},
    {"11", "229 Entering Extended Passive Mode (|||6446|).", "229 6446"},
    {"11", "229 Entering Extended Passive Mode (|||6446)", "err syntax error"},
    {"11", "229 Entering Extended Passive Mode (||6446|)", "err syntax error"},
    {"11", "229 Entering Extended Passive Mode (|1|10.0.0.1|6446|)", "err syntax error"},
    {"11", "229 Entering Extended Passive Mode (1116446 1)", "err syntax error"},
    {"11", "229 Entering Extended Passive Mode (|||6446|) (|||22|)", "err syntax error"},
    {"11", "229 Entering Extended Passive Mode (|!|6446|)", "err syntax error"},
    {"11", "229 Entering Extended Passive Mode (|||06446|)", "err syntax error"},
    {"11", "229 Entering Extended Passive Mode |||6446|", "err syntax error"},
    /* row 3 and 6 for 229 */
    {"3", "229 Entering Extended Passive Mode (|||0|)", "err number out of range"},
    {"3", "229 Entering Extended Passive Mode (|||22|)", "229 22"},
    {"6", "229 Entering Extended Passive Mode (|||65557|)", "err number out of range"},
    {"6", "229 Entering Extended Passive Mode (|||655357|)", "err syntax error"},
};

START_TEST(reply_table)
{
    const reply_case *c = &reply_cases[_i];
    char got[128], buf[80];
    struct sockaddr_storage a;
    uint16_t port;
    size_t len = strlen(c->line);
    ftp_perr e;
    if (strncmp(c->line, "227", 3) == 0) {
        e = ftp_parse_227(c->line, len, &a);
        if (e == FTP_P_OK)
            snprintf(got, sizeof got, "227 %s", sa_text(&a, buf, sizeof buf));
    } else {
        e = ftp_parse_229(c->line, len, &port);
        if (e == FTP_P_OK)
            snprintf(got, sizeof got, "229 %u", port);
    }
    if (e != FTP_P_OK)
        snprintf(got, sizeof got, "err %s", ftp_perr_text(e));
    ck_assert_msg(strcmp(got, c->want) == 0, "row %s: \"%s\": got \"%s\", want \"%s\"", c->row, c->line, got, c->want);
}
END_TEST

/* Multi-line replies: only the last line of a reply is final; an intermediate "227 " inside
   another code's reply is text (row 9's note, RFC 959 4.2). Fed through the line assembler at
   every split point. */
static void on_reply_line(void *arg, ftp_line_status st, const char *line, size_t len)
{
    void **ctx = arg;
    transcript *t = ctx[0];
    ftp_replies *r = ctx[1];
    int code = 0;
    if (st != FTP_LINE_OK) {
        tr_add(t, "bad(%s)\n", ftp_line_status_text(st));
        return;
    }
    static const char *const names[] = {"final", "start", "text", "bad"};
    ftp_reply_kind k = ftp_replies_line(r, line, len, &code);
    tr_add(t, "%s %d\n", names[k], k == FTP_R_BAD ? 0 : code);
}

static void run_replies(const char *s, size_t n, size_t cut, transcript *t)
{
    ftp_lines l;
    ftp_replies r = {0};
    void *ctx[2] = {t, &r};
    ftp_lines_init(&l);
    t->len = 0;
    t->text[0] = 0;
    ftp_lines_feed(&l, (const uint8_t *)s, cut, on_reply_line, ctx);
    ftp_lines_feed(&l, (const uint8_t *)s + cut, n - cut, on_reply_line, ctx);
}

START_TEST(multiline_replies)
{
    static const char s[] = "220-Welcome\r\n227 Entering Passive Mode (192,0,2,99,0,22)\r\n220-still\r\n 220 x\r\n"
                            "220 ready\r\n150 Opening\r\n226 Done\r\n227-a\r\n227 Entering Passive Mode (1,2,3,4,5,6)\r\n"
                            "bogus\r\n2000 x\r\n200\r\n600 x\r\n";
    static const char want[] = "start 220\ntext 220\ntext 220\ntext 220\nfinal 220\nfinal 150\nfinal 226\nstart 227\n"
                               "final 227\nbad 0\nbad 0\nfinal 200\nbad 0\n";
    static transcript t, u;
    run_replies(s, sizeof s - 1, 0, &t);
    ck_assert_str_eq(t.text, want);
    for (size_t k = 1; k < sizeof s - 1; k++) {
        run_replies(s, sizeof s - 1, k, &u);
        ck_assert_str_eq(u.text, want);
    }
    /* Row 21: a 70000-digit reply is refused at the limit. */
    static char big[70100];
    memcpy(big, "213 ", 4);
    memset(big + 4, '9', 70000);
    memcpy(big + 70004, "\r\n200 ok\r\n", 10);
    run_replies(big, 70014, 0, &t);
    ck_assert_str_eq(t.text, "bad(line longer than 512 bytes)\nfinal 200\n");
}
END_TEST

/* ---- formatters and commands ------------------------------------------------------------------- */

START_TEST(formatters_round_trip)
{
    char out[128], buf[80];
    struct sockaddr_storage a, b;
    uint16_t port;
    int np;
    ck_assert_int_eq(ftp_parse_port("203,0,113,1,195,80", 18, &a), FTP_P_OK);
    size_t n = ftp_fmt_port(out, sizeof out, (struct sockaddr *)&a);
    ck_assert_str_eq(out, "PORT 203,0,113,1,195,80\r\n");
    ck_assert_uint_eq(n, strlen(out));
    n = ftp_fmt_227(out, sizeof out, (struct sockaddr *)&a);
    ck_assert_str_eq(out, "227 Entering Passive Mode (203,0,113,1,195,80).\r\n");
    ck_assert_int_eq(ftp_parse_227(out, n - 2, &b), FTP_P_OK);
    ck_assert_str_eq(sa_text(&b, buf, sizeof buf), "203.0.113.1:50000");
    n = ftp_fmt_eprt(out, sizeof out, (struct sockaddr *)&a);
    ck_assert_str_eq(out, "EPRT |1|203.0.113.1|50000|\r\n");
    ck_assert_int_eq(ftp_parse_eprt(out + 5, n - 7, &b, &np), FTP_P_OK);
    ck_assert_int_eq(np, 1);
    n = ftp_fmt_229(out, sizeof out, 50000);
    ck_assert_str_eq(out, "229 Entering Extended Passive Mode (|||50000|).\r\n");
    ck_assert_int_eq(ftp_parse_229(out, n - 2, &port), FTP_P_OK);
    ck_assert_uint_eq(port, 50000);
    ck_assert_uint_eq(ftp_fmt_229(out, sizeof out, 0), 0);
    ck_assert_uint_eq(ftp_fmt_port(out, 10, (struct sockaddr *)&a), 0); /* too small: nothing */
    /* IPv6 */
    ck_assert_int_eq(ftp_parse_eprt("|2|2001:db8::8|8080|", 20, &a, &np), FTP_P_OK);
    ck_assert_int_eq(np, 2);
    ck_assert_int_eq(a.ss_family, AF_INET6);
    ftp_fmt_eprt(out, sizeof out, (struct sockaddr *)&a);
    ck_assert_str_eq(out, "EPRT |2|2001:db8::8|8080|\r\n");
    ck_assert_uint_eq(ftp_fmt_port(out, sizeof out, (struct sockaddr *)&a), 0);
    /* v4-mapped is canonicalised to IPv4 */
    ck_assert_int_eq(ftp_parse_eprt("|2|::ffff:10.0.0.8|8080|", 24, &a, &np), FTP_P_OK);
    ck_assert_int_eq(a.ss_family, AF_INET);
    ck_assert_str_eq(sa_text(&a, buf, sizeof buf), "10.0.0.8:8080");
}
END_TEST

START_TEST(command_verbs)
{
    ftp_cmd c;
    ck_assert(ftp_cmd_parse("noop", 4, &c));
    ck_assert_str_eq(c.verb, "NOOP");
    ck_assert_ptr_null(c.arg);
    ck_assert(ftp_cmd_parse("Retr a  b", 9, &c));
    ck_assert_str_eq(c.verb, "RETR");
    ck_assert_uint_eq(c.arg_len, 4);
    ck_assert(ftp_cmd_parse("CWD ", 4, &c));
    ck_assert_uint_eq(c.arg_len, 0);
    ck_assert(!ftp_cmd_parse("", 0, &c));
    ck_assert(!ftp_cmd_parse("NO", 2, &c));
    ck_assert(!ftp_cmd_parse("N1OP", 4, &c));
    ck_assert(!ftp_cmd_parse("NOOPS", 5, &c));
}
END_TEST

static Suite *ftp_parse_suite(void)
{
    Suite *s = suite_create("ftp_parse");
    TCase *tc = tcase_create("commands");
    tcase_add_loop_test(tc, command_table, 0, (int)(sizeof cmd_cases / sizeof cmd_cases[0]));
    tcase_add_test(tc, overlong_lines);
    tcase_add_test(tc, command_verbs);
    suite_add_tcase(s, tc);
    tc = tcase_create("replies");
    tcase_add_loop_test(tc, reply_table, 0, (int)(sizeof reply_cases / sizeof reply_cases[0]));
    tcase_add_test(tc, multiline_replies);
    tcase_add_test(tc, formatters_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(ftp_parse_suite()); }
