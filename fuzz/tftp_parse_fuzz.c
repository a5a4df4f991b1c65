/*
 * fwx fuzzing - the TFTP parser (plugins/tftp/tftp_parse.c), libFuzzer target.
 *
 * Input framing (as the other targets): chunks separated by
 * the 4-byte marker 01 D5 CA 7A; each chunk is one datagram as the filter would receive it.
 *
 * Invariants (a violation is __builtin_trap()):
 *   - tftp_parse_request accepts only what a reference re-encoding gives back byte for byte:
 *     opcode 1/2, filename NUL mode NUL, then name NUL value NUL pairs, nothing else; so the
 *     parser neither drops nor invents bytes;
 *   - an accepted request: at most TFTP_REQ_MAX bytes, a 1..TFTP_FILENAME_MAX filename of
 *     printable ASCII, mode netascii/octet (mail only in a WRQ), at most TFTP_OPTS_MAX options,
 *     no two option names equal ignoring case, the known options' values in their RFC ranges
 *     and the known bits matching the names present;
 *   - the status is a defined one with a text and an ERROR code;
 *   - tftp_fmt_error into an exact-size heap buffer of every size 0..len+1 writes nothing past
 *     it, never more than the datagram's length, and gives a well-formed ERROR packet;
 *   - tftp_check_client on the datagram's first bytes read as an IPv4 and an IPv6 address never
 *     accepts a port under 1024.
 * SPDX-License-Identifier: MIT
 */
#include "tftp_parse.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHECK(x)                                                                                  \
    do {                                                                                          \
        if (!(x))                                                                                 \
            __builtin_trap();                                                                     \
    } while (0)

static const uint8_t MARK[4] = {0x01, 0xD5, 0xCA, 0x7A};

static size_t put(uint8_t *out, size_t n, const char *s)
{
    size_t l = strlen(s);
    memcpy(out + n, s, l + 1);
    return n + l + 1;
}

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

static void check_request(const uint8_t *d, size_t n)
{
    tftp_request r;
    tftp_status st = tftp_parse_request(d, n, &r);
    CHECK((int)st >= TFTP_P_OK && (int)st <= TFTP_P_OPT_VALUE);
    CHECK(tftp_status_text(st) != NULL && strcmp(tftp_status_text(st), "unknown") != 0);
    uint16_t code = tftp_status_error_code(st);
    CHECK(st == TFTP_P_OK ? code == 0 : (code == TFTP_ERR_ILLEGAL_OP || code == TFTP_ERR_OPTION));
    if (st != TFTP_P_OK)
        return;
    CHECK(n <= TFTP_REQ_MAX);
    CHECK(r.opcode == TFTP_OP_RRQ || r.opcode == TFTP_OP_WRQ);
    CHECK(r.filename_len >= 1 && r.filename_len <= TFTP_FILENAME_MAX && strlen(r.filename) == r.filename_len);
    CHECK(printable(r.filename));
    CHECK(r.mode == TFTP_MODE_NETASCII || r.mode == TFTP_MODE_OCTET ||
          (r.mode == TFTP_MODE_MAIL && r.opcode == TFTP_OP_WRQ));
    CHECK(r.n_opts <= TFTP_OPTS_MAX);
    /* re-encode; the mode is the input's own spelling, so take it from the input */
    uint8_t re[TFTP_REQ_MAX + 64];
    size_t m = 0;
    re[m++] = 0;
    re[m++] = (uint8_t)r.opcode;
    m = put(re, m, r.filename);
    const char *mode = (const char *)d + 2 + r.filename_len + 1;
    size_t ml = strnlen(mode, n - (2 + r.filename_len + 1));
    CHECK(ml < n - (2 + r.filename_len + 1));
    CHECK(strcasecmp(mode, r.mode == TFTP_MODE_NETASCII ? "netascii" : r.mode == TFTP_MODE_OCTET ? "octet" : "mail") == 0);
    m = put(re, m, mode);
    unsigned known = 0;
    for (unsigned i = 0; i < r.n_opts; i++) {
        const tftp_option *o = &r.opts[i];
        size_t nl = strlen(o->name), vl = strlen(o->value);
        CHECK(nl >= 1 && nl <= TFTP_OPT_NAME_MAX && vl >= 1 && vl <= TFTP_OPT_VALUE_MAX);
        CHECK(printable(o->name) && printable(o->value));
        for (unsigned j = 0; j < i; j++)
            CHECK(strcasecmp(r.opts[j].name, o->name) != 0);
        char *end;
        unsigned long long v = strtoull(o->value, &end, 10);
        if (strcasecmp(o->name, "blksize") == 0) {
            CHECK(*end == '\0' && v >= 8 && v <= 65464 && r.blksize == v);
            known |= TFTP_OPT_BLKSIZE;
        } else if (strcasecmp(o->name, "timeout") == 0) {
            CHECK(*end == '\0' && v >= 1 && v <= 255 && r.timeout == v);
            known |= TFTP_OPT_TIMEOUT;
        } else if (strcasecmp(o->name, "tsize") == 0) {
            CHECK(o->value[0] >= '0' && o->value[0] <= '9' && *end == '\0' && r.tsize == v);
            CHECK(r.opcode == TFTP_OP_WRQ || v == 0);
            known |= TFTP_OPT_TSIZE;
        } else if (strcasecmp(o->name, "windowsize") == 0) {
            CHECK(*end == '\0' && v >= 1 && v <= 65535 && r.windowsize == v);
            known |= TFTP_OPT_WINDOWSIZE;
        }
        m = put(re, m, o->name);
        m = put(re, m, o->value);
    }
    CHECK(known == r.known);
    CHECK(m == n && memcmp(re, d, n) == 0);
}

static void check_error(const uint8_t *d, size_t n)
{
    char msg[TFTP_ERRMSG_MAX + 20];
    size_t ml = n < sizeof msg - 1 ? n : sizeof msg - 1;
    memcpy(msg, d, ml);
    msg[ml] = 0;
    uint16_t code = n >= 2 ? (uint16_t)(d[0] << 8 | d[1]) : 0;
    size_t top = n + 1 < 140 ? n + 1 : 140;
    for (size_t cap = 0; cap <= top; cap++) {
        uint8_t *out = malloc(cap ? cap : 1);
        CHECK(out != NULL);
        size_t w = tftp_fmt_error(cap ? out : out, cap, code, msg);
        CHECK(w <= cap);
        if (cap < 5)
            CHECK(w == 0);
        else {
            CHECK(w >= 5 && w <= 4 + TFTP_ERRMSG_MAX + 1);
            CHECK(out[0] == 0 && out[1] == TFTP_OP_ERROR && out[2] == (code >> 8) && out[3] == (code & 0xff));
            CHECK(out[w - 1] == 0);
            for (size_t i = 4; i + 1 < w; i++)
                CHECK(out[i] >= 0x20 && out[i] <= 0x7e);
        }
        free(out);
    }
}

static void check_client(const uint8_t *d, size_t n)
{
    struct sockaddr_in s4;
    struct sockaddr_in6 s6;
    memset(&s4, 0, sizeof s4);
    memset(&s6, 0, sizeof s6);
    s4.sin_family = AF_INET;
    s6.sin6_family = AF_INET6;
    if (n >= 6) {
        memcpy(&s4.sin_addr, d, 4);
        memcpy(&s4.sin_port, d + 4, 2);
        if (tftp_check_client((struct sockaddr *)&s4) == NULL)
            CHECK(ntohs(s4.sin_port) >= 1024);
    }
    if (n >= 18) {
        memcpy(&s6.sin6_addr, d, 16);
        memcpy(&s6.sin6_port, d + 16, 2);
        if (tftp_check_client((struct sockaddr *)&s6) == NULL)
            CHECK(ntohs(s6.sin6_port) >= 1024 && !IN6_IS_ADDR_LOOPBACK(&s6.sin6_addr));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t start = 0;
    while (start <= size) {
        size_t end = start;
        while (end + 4 <= size && memcmp(data + end, MARK, 4) != 0)
            end++;
        if (end + 4 > size)
            end = size;
        const uint8_t *d = data + start;
        size_t n = end - start;
        /* exact-size copy so that ASan sees any read past the datagram */
        uint8_t *copy = malloc(n ? n : 1);
        if (copy == NULL)
            return 0;
        if (n)
            memcpy(copy, d, n);
        check_request(copy, n);
        check_error(copy, n);
        check_client(copy, n);
        free(copy);
        start = end + 4;
    }
    return 0;
}
