/*
 * fwx tests - the TFTP filter's parser (plugins/tftp/tftp_parse.c), table-driven: every request
 * of the attack catalog's TFTP rows (doc/security.md) that the parser decides (60, 63, 64, 65) with its exact
 * status, the requests real clients send (tftp-hpa, curl, atftp, PXE ROMs) accepted with the
 * values they carry, every truncation of a good request refused, and the ERROR formatter.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "tftp_parse.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A request written as a C string with explicit NULs: the length is given, not strlen. */
typedef struct req_case {
    const char *what;
    const char *pkt;
    size_t len;
    tftp_status want;
} req_case;

#define P(s) s, sizeof(s) - 1

static const req_case req_cases[] = {
    /* what real clients send */
    {"tftp-hpa get octet", P("\0\1hello.txt\0octet\0"), TFTP_P_OK},
    {"tftp-hpa put netascii", P("\0\2up/load.bin\0netascii\0"), TFTP_P_OK},
    {"mode any case", P("\0\1f\0OcTeT\0"), TFTP_P_OK},
    {"curl with blksize and tsize", P("\0\1big.bin\0octet\0tsize\0" "0\0blksize\0" "1428\0"), TFTP_P_OK},
    {"all four options", P("\0\1f\0octet\0blksize\0" "512\0timeout\0" "5\0tsize\0" "0\0windowsize\0" "16\0"), TFTP_P_OK},
    {"WRQ tsize is the size", P("\0\2f\0octet\0tsize\0" "3145728\0"), TFTP_P_OK},
    {"unknown option passes", P("\0\1f\0octet\0multicast\0x\0"), TFTP_P_OK},
    {"option name any case", P("\0\1f\0octet\0BLKSIZE\0" "8\0"), TFTP_P_OK},
    {"blksize max", P("\0\1f\0octet\0blksize\0" "65464\0"), TFTP_P_OK},
    {"mail in a WRQ", P("\0\2user\0mail\0"), TFTP_P_OK},
    {"PXE path", P("\0\1pxelinux.cfg/01-52-54-00-12-34-56\0octet\0"), TFTP_P_OK},
    /* row 63: malformed */
    {"no NUL after filename", P("\0\1hello.txt"), TFTP_P_NO_NUL},
    {"no NUL after mode", P("\0\1hello.txt\0octet"), TFTP_P_NO_NUL},
    {"no mode", P("\0\1hello.txt\0"), TFTP_P_SHORT},
    {"opcode only", P("\0\1"), TFTP_P_SHORT},
    {"one byte", P("\0"), TFTP_P_SHORT},
    {"empty", P(""), TFTP_P_SHORT},
    {"opcode 0", P("\0\0f\0octet\0"), TFTP_P_NOT_REQUEST},
    {"opcode 7", P("\0\7f\0octet\0"), TFTP_P_NOT_REQUEST},
    {"opcode 0x0101", P("\1\1f\0octet\0"), TFTP_P_NOT_REQUEST},
    {"DATA is no request", P("\0\3\0\1data"), TFTP_P_NOT_REQUEST},
    {"ACK is no request", P("\0\4\0\1"), TFTP_P_NOT_REQUEST},
    {"ERROR is no request", P("\0\5\0\1x\0"), TFTP_P_NOT_REQUEST},
    {"OACK is no request", P("\0\6blksize\0" "512\0"), TFTP_P_NOT_REQUEST},
    {"unknown mode", P("\0\1f\0binary\0"), TFTP_P_MODE},
    {"mode prefix", P("\0\1f\0oct\0"), TFTP_P_MODE},
    {"mode with suffix", P("\0\1f\0octets\0"), TFTP_P_MODE},
    {"empty mode", P("\0\1ff\0\0"), TFTP_P_MODE},
    {"5 bytes", P("\0\1f\0\0"), TFTP_P_SHORT},
    {"mail in a RRQ", P("\0\1f\0mail\0"), TFTP_P_MODE},
    {"empty filename", P("\0\1\0octet\0"), TFTP_P_EMPTY_NAME},
    {"newline in filename", P("\0\1a\nb\0octet\0"), TFTP_P_BAD_BYTE},
    {"8-bit filename", P("\0\1caf\xc3\xa9\0octet\0"), TFTP_P_BAD_BYTE},
    {"DEL in mode", P("\0\1f\0oct\x7f" "t\0"), TFTP_P_BAD_BYTE},
    {"control in option", P("\0\1f\0octet\0blk\1size\0" "512\0"), TFTP_P_BAD_BYTE},
    /* row 64: option abuse */
    {"blksize 0", P("\0\1f\0octet\0blksize\0" "0\0"), TFTP_P_OPT_VALUE},
    {"blksize 7", P("\0\1f\0octet\0blksize\0" "7\0"), TFTP_P_OPT_VALUE},
    {"blksize 65465", P("\0\1f\0octet\0blksize\0" "65465\0"), TFTP_P_OPT_VALUE},
    {"blksize huge", P("\0\1f\0octet\0blksize\0" "999999999999\0"), TFTP_P_OPT_VALUE},
    {"blksize 21 digits", P("\0\1f\0octet\0blksize\0" "100000000000000000000\0"), TFTP_P_OPT_VALUE},
    {"blksize leading zero", P("\0\1f\0octet\0blksize\0" "0512\0"), TFTP_P_OPT_VALUE},
    {"blksize signed", P("\0\1f\0octet\0blksize\0+512\0"), TFTP_P_OPT_VALUE},
    {"blksize hex", P("\0\1f\0octet\0blksize\0" "0x200\0"), TFTP_P_OPT_VALUE},
    {"tsize negative", P("\0\2f\0octet\0tsize\0-1\0"), TFTP_P_OPT_VALUE},
    {"tsize nonzero in RRQ", P("\0\1f\0octet\0tsize\0" "5\0"), TFTP_P_OPT_VALUE},
    {"tsize over 64 bits", P("\0\2f\0octet\0tsize\0" "18446744073709551616\0"), TFTP_P_OPT_VALUE},
    {"timeout 0", P("\0\1f\0octet\0timeout\0" "0\0"), TFTP_P_OPT_VALUE},
    {"timeout 256", P("\0\1f\0octet\0timeout\0" "256\0"), TFTP_P_OPT_VALUE},
    {"windowsize 0", P("\0\1f\0octet\0windowsize\0" "0\0"), TFTP_P_OPT_VALUE},
    {"windowsize 70000", P("\0\1f\0octet\0windowsize\0" "70000\0"), TFTP_P_OPT_VALUE},
    {"duplicate option", P("\0\1f\0octet\0blksize\0" "512\0blksize\0" "1428\0"), TFTP_P_OPT_DUP},
    {"duplicate option other case", P("\0\1f\0octet\0blksize\0" "512\0BlkSize\0" "512\0"), TFTP_P_OPT_DUP},
    {"duplicate unknown option", P("\0\1f\0octet\0x\0" "1\0x\0" "2\0"), TFTP_P_OPT_DUP},
    {"option without value", P("\0\1f\0octet\0blksize\0"), TFTP_P_OPT_EMPTY},
    {"option value unterminated", P("\0\1f\0octet\0blksize\0" "512"), TFTP_P_NO_NUL},
    {"option name unterminated", P("\0\1f\0octet\0blksize"), TFTP_P_NO_NUL},
    {"empty option name", P("\0\1f\0octet\0\0" "512\0"), TFTP_P_OPT_EMPTY},
    {"empty option value", P("\0\1f\0octet\0blksize\0\0"), TFTP_P_OPT_EMPTY},
    {"padding NULs", P("\0\1f\0octet\0\0\0"), TFTP_P_OPT_EMPTY},
    {"option name 33 bytes", P("\0\1f\0octet\0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\0" "1\0"), TFTP_P_OPT_TOO_LONG},
    {"option value 33 bytes", P("\0\1f\0octet\0x\0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\0"), TFTP_P_OPT_TOO_LONG},
    {"9 options", P("\0\1f\0octet\0a\0" "1\0b\0" "1\0c\0" "1\0d\0" "1\0e\0" "1\0f\0" "1\0g\0" "1\0h\0" "1\0i\0" "1\0"),
     TFTP_P_OPT_TOO_MANY},
};

START_TEST(request_table)
{
    const req_case *c = &req_cases[_i];
    tftp_request r;
    tftp_status st = tftp_parse_request((const uint8_t *)c->pkt, c->len, &r);
    if (st != c->want)
        ck_abort_msg("%s: got %d (%s), want %d (%s)", c->what, (int)st, tftp_status_text(st), (int)c->want,
                     tftp_status_text(c->want));
}
END_TEST

/* The values of an accepted request. */
START_TEST(request_values)
{
    static const char pkt[] = "\0\1big.bin\0OCTET\0tsize\0" "0\0BlkSize\0" "1428\0timeout\0" "3\0windowsize\0"
                              "4\0x-vendor\0abc\0";
    tftp_request r;
    ck_assert_int_eq(tftp_parse_request((const uint8_t *)pkt, sizeof pkt - 1, &r), TFTP_P_OK);
    ck_assert_int_eq(r.opcode, TFTP_OP_RRQ);
    ck_assert_str_eq(r.filename, "big.bin");
    ck_assert_uint_eq(r.filename_len, 7);
    ck_assert_int_eq(r.mode, TFTP_MODE_OCTET);
    ck_assert_uint_eq(r.n_opts, 5);
    ck_assert_uint_eq(r.known, TFTP_OPT_BLKSIZE | TFTP_OPT_TSIZE | TFTP_OPT_TIMEOUT | TFTP_OPT_WINDOWSIZE);
    ck_assert_uint_eq(r.blksize, 1428);
    ck_assert_uint_eq(r.tsize, 0);
    ck_assert_uint_eq(r.timeout, 3);
    ck_assert_uint_eq(r.windowsize, 4);
    ck_assert_str_eq(r.opts[1].name, "BlkSize");
    ck_assert_str_eq(r.opts[4].name, "x-vendor");
    ck_assert_str_eq(r.opts[4].value, "abc");

    static const char wrq[] = "\0\2out.bin\0netascii\0tsize\0" "18446744073709551615\0";
    ck_assert_int_eq(tftp_parse_request((const uint8_t *)wrq, sizeof wrq - 1, &r), TFTP_P_OK);
    ck_assert_int_eq(r.opcode, TFTP_OP_WRQ);
    ck_assert_int_eq(r.mode, TFTP_MODE_NETASCII);
    ck_assert_uint_eq(r.tsize, UINT64_MAX);
}
END_TEST

/* Filename and packet length limits (row 63: 600-byte filename). */
START_TEST(length_limits)
{
    uint8_t pkt[700];
    tftp_request r;
    for (size_t name = 250; name <= 600; name += 1) {
        pkt[0] = 0;
        pkt[1] = TFTP_OP_RRQ;
        memset(pkt + 2, 'a', name);
        pkt[2 + name] = 0;
        memcpy(pkt + 3 + name, "octet", 6);
        size_t len = 3 + name + 6;
        tftp_status st = tftp_parse_request(pkt, len, &r);
        tftp_status want = len > TFTP_REQ_MAX ? TFTP_P_TOO_LONG
                           : name > TFTP_FILENAME_MAX ? TFTP_P_NAME_TOO_LONG
                                                      : TFTP_P_OK;
        ck_assert_msg(st == want, "name %zu: got %s", name, tftp_status_text(st));
        if (st == TFTP_P_OK)
            ck_assert_uint_eq(strlen(r.filename), name);
    }
    /* 512 bytes of options after a short name: accepted up to 512, refused at 513 */
    size_t n = 0;
    memcpy(pkt, "\0\1f\0octet\0", 10);
    n = 10;
    memcpy(pkt + n, "x\0", 2);
    n += 2;
    size_t vlen = TFTP_REQ_MAX - n - 1; /* too long for one value: expect OPT_TOO_LONG, not overflow */
    memset(pkt + n, '1', vlen);
    pkt[n + vlen] = 0;
    ck_assert_int_eq(tftp_parse_request(pkt, n + vlen + 1, &r), TFTP_P_OPT_TOO_LONG);
    ck_assert_int_eq(tftp_parse_request(pkt, n + vlen + 2, &r), TFTP_P_TOO_LONG);
}
END_TEST

/* Every strict prefix of a good request is refused (a truncated datagram never opens). */
START_TEST(truncations)
{
    static const char pkt[] = "\0\1big.bin\0octet\0tsize\0" "0\0blksize\0" "1428\0";
    tftp_request r;
    ck_assert_int_eq(tftp_parse_request((const uint8_t *)pkt, sizeof pkt - 1, &r), TFTP_P_OK);
    for (size_t n = 0; n < sizeof pkt - 1; n++) {
        /* the cuts just after the mode's NUL and after the first option's value are whole
           requests */
        tftp_status st = tftp_parse_request((const uint8_t *)pkt, n, &r);
        if (n == 16 || n == 24)
            ck_assert_int_eq(st, TFTP_P_OK);
        else
            ck_assert_msg(st != TFTP_P_OK, "prefix %zu accepted", n);
    }
}
END_TEST

START_TEST(error_packets)
{
    uint8_t out[200];
    size_t n = tftp_fmt_error(out, sizeof out, TFTP_ERR_ILLEGAL_OP, "bad mode");
    ck_assert_uint_eq(n, 4 + 8 + 1);
    ck_assert_mem_eq(out, "\0\5\0\4bad mode\0", n);
    ck_assert_int_eq(tftp_opcode(out, n), TFTP_OP_ERROR);
    /* never more bytes than the refused datagram had (row 65) */
    memset(out, 0xAA, sizeof out);
    n = tftp_fmt_error(out, 7, TFTP_ERR_OPTION, "duplicate option");
    ck_assert_uint_eq(n, 7);
    ck_assert_mem_eq(out, "\0\5\0\10du\0", 7);
    ck_assert_uint_eq(out[7], 0xAA);
    ck_assert_uint_eq(tftp_fmt_error(out, 4, 0, "x"), 0);
    ck_assert_uint_eq(tftp_fmt_error(out, 5, 0, "x"), 5);
    /* message bounded and cleaned */
    char longmsg[300];
    memset(longmsg, 'm', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = 0;
    longmsg[3] = '\n';
    n = tftp_fmt_error(out, sizeof out, 0, longmsg);
    ck_assert_uint_eq(n, 4 + TFTP_ERRMSG_MAX + 1);
    ck_assert_uint_eq(out[4 + 3], '?');
    ck_assert_uint_eq(tftp_status_error_code(TFTP_P_MODE), TFTP_ERR_ILLEGAL_OP);
    ck_assert_uint_eq(tftp_status_error_code(TFTP_P_OPT_DUP), TFTP_ERR_OPTION);
    ck_assert_int_eq(tftp_opcode(out, 1), -1);
}
END_TEST

static void sa4(struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *s = (struct sockaddr_in *)ss;
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    ck_assert_int_eq(inet_pton(AF_INET, ip, &s->sin_addr), 1);
}

static void sa6(struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    ck_assert_int_eq(inet_pton(AF_INET6, ip, &s->sin6_addr), 1);
}

/* Row 60: sources that must never receive a transfer. */
START_TEST(client_checks)
{
    struct sockaddr_storage ss;
    sa4(&ss, "198.51.100.7", 40000);
    ck_assert_ptr_null(tftp_check_client((struct sockaddr *)&ss));
    sa4(&ss, "198.51.100.7", 1024);
    ck_assert_ptr_null(tftp_check_client((struct sockaddr *)&ss));
    static const uint16_t bad_ports[] = {0, 7, 19, 22, 53, 69, 123, 1023};
    for (size_t i = 0; i < sizeof bad_ports / sizeof bad_ports[0]; i++) {
        sa4(&ss, "198.51.100.7", bad_ports[i]);
        ck_assert_str_eq(tftp_check_client((struct sockaddr *)&ss), "privileged client port");
        sa6(&ss, "2001:db8::7", bad_ports[i]);
        ck_assert_str_eq(tftp_check_client((struct sockaddr *)&ss), "privileged client port");
    }
    sa4(&ss, "0.0.0.0", 40000);
    ck_assert_str_eq(tftp_check_client((struct sockaddr *)&ss), "unspecified client address");
    sa4(&ss, "127.0.0.1", 40000);
    ck_assert_str_eq(tftp_check_client((struct sockaddr *)&ss), "loopback client address");
    sa4(&ss, "224.0.0.1", 40000);
    ck_assert_str_eq(tftp_check_client((struct sockaddr *)&ss), "multicast client address");
    sa4(&ss, "255.255.255.255", 40000);
    ck_assert_str_eq(tftp_check_client((struct sockaddr *)&ss), "broadcast client address");
    sa6(&ss, "::", 40000);
    ck_assert_str_eq(tftp_check_client((struct sockaddr *)&ss), "unspecified client address");
    sa6(&ss, "::1", 40000);
    ck_assert_str_eq(tftp_check_client((struct sockaddr *)&ss), "loopback client address");
    sa6(&ss, "ff02::1", 40000);
    ck_assert_str_eq(tftp_check_client((struct sockaddr *)&ss), "multicast client address");
    sa6(&ss, "::ffff:127.0.0.1", 40000);
    ck_assert_str_eq(tftp_check_client((struct sockaddr *)&ss), "loopback client address");
    sa6(&ss, "2001:db8::7", 40000);
    ck_assert_ptr_null(tftp_check_client((struct sockaddr *)&ss));
    ss.ss_family = AF_UNIX;
    ck_assert_str_eq(tftp_check_client((struct sockaddr *)&ss), "not an IP address");
    ck_assert_ptr_nonnull(tftp_check_client(NULL));
}
END_TEST

static Suite *tftp_parse_suite(void)
{
    Suite *s = suite_create("tftp_parse");
    TCase *tc = tcase_create("requests");
    tcase_add_loop_test(tc, request_table, 0, (int)(sizeof req_cases / sizeof req_cases[0]));
    tcase_add_test(tc, request_values);
    tcase_add_test(tc, length_limits);
    tcase_add_test(tc, truncations);
    suite_add_tcase(s, tc);
    tc = tcase_create("replies");
    tcase_add_test(tc, error_packets);
    tcase_add_test(tc, client_checks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(tftp_parse_suite()); }
