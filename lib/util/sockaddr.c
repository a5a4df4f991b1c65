/*
 * fwx - socket address helpers.
 * SPDX-License-Identifier: MIT
 */
#include "util/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

uint32_t fwx__sa_len(const struct sockaddr *sa)
{
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET)
        return sizeof(struct sockaddr_in);
    if (sa->sa_family == AF_INET6)
        return sizeof(struct sockaddr_in6);
    return 0;
}

bool fwx__sa_valid(const struct sockaddr *sa, uint32_t len)
{
    uint32_t need = fwx__sa_len(sa);
    return need != 0 && len >= need;
}

bool fwx__sa_canon(const struct sockaddr *sa, uint32_t len, struct sockaddr_storage *out)
{
    if (!fwx__sa_valid(sa, len))
        return false;
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        /* A v4-mapped address is the IPv4 host: compare and scope it as one, or a PORT to
           ::ffff:127.0.0.1 would slip past the loopback check. */
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)out;
            s4->sin_family = AF_INET;
            s4->sin_port = s6->sin6_port;
            memcpy(&s4->sin_addr, &s6->sin6_addr.s6_addr[12], 4);
            return true;
        }
        memcpy(out, sa, sizeof *s6);
        return true;
    }
    memcpy(out, sa, sizeof(struct sockaddr_in));
    return true;
}

_Static_assert(sizeof(fwx__sa) == sizeof(struct sockaddr_in6), "fwx__sa holds an IPv6 address, no more");

bool fwx__sa_set(fwx__sa *out, const struct sockaddr *sa)
{
    memset(out, 0, sizeof *out);
    if (sa == NULL || sa->sa_family == AF_UNSPEC)
        return true;
    uint32_t len = fwx__sa_len(sa);
    if (len == 0)
        return false;
    memcpy(out, sa, len);
    return true;
}

void fwx__sa_get(struct sockaddr_storage *out, const fwx__sa *a)
{
    memset(out, 0, sizeof *out);
    memcpy(out, a, fwx__sa_len(&a->sa));
}

uint16_t fwx__sa_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

void fwx__sa_set_port(struct sockaddr *sa, uint16_t port)
{
    if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_port = htons(port);
    else if (sa->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
}

static const uint8_t *ip_bytes(const struct sockaddr *sa, unsigned *nbytes)
{
    if (sa->sa_family == AF_INET) {
        *nbytes = 4;
        return (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    }
    if (sa->sa_family == AF_INET6) {
        *nbytes = 16;
        return ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    }
    *nbytes = 0;
    return NULL;
}

bool fwx__sa_same_ip(const struct sockaddr *a, const struct sockaddr *b)
{
    return a->sa_family == b->sa_family && fwx__sa_cmp_ip(a, b) == 0;
}

bool fwx__sa_same_endpoint(const struct sockaddr *a, const struct sockaddr *b)
{
    return fwx__sa_same_ip(a, b) && fwx__sa_port(a) == fwx__sa_port(b);
}

void fwx__sa_key_of(const struct sockaddr *sa, bool with_port, fwx__sa_key *k)
{
    memset(k, 0, sizeof *k);
    k->family = (uint8_t)sa->sa_family;
    if (with_port)
        k->port = fwx__sa_port(sa);
    unsigned n;
    const uint8_t *ip = ip_bytes(sa, &n);
    if (ip != NULL)
        memcpy(k->ip, ip, n);
}

bool fwx__sa_same_prefix(const struct sockaddr *a, const struct sockaddr *b, unsigned bits)
{
    unsigned na, nb;
    const uint8_t *pa = ip_bytes(a, &na), *pb = ip_bytes(b, &nb);
    if (pa == NULL || na != nb || bits > na * 8)
        return false;
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(pa, pb, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xFF << (8 - rest));
    return (pa[whole] & mask) == (pb[whole] & mask);
}

int fwx__sa_cmp_ip(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return a->sa_family == AF_INET ? -1 : 1;
    unsigned n, m;
    const uint8_t *pa = ip_bytes(a, &n), *pb = ip_bytes(b, &m);
    if (pa == NULL || pb == NULL)
        return 0;
    return memcmp(pa, pb, n);
}

bool fwx__sa_is_unspecified(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

bool fwx__sa_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

bool fwx__sa_is_this_network(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET && (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 0;
}

bool fwx__sa_is_multicast(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return IN_MULTICAST(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_MULTICAST(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

bool fwx__sa_is_broadcast(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET && ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_BROADCAST);
}

const char *fwx__sa_fmt_ip(const struct sockaddr *sa, char buf[FWX__SA_STRLEN])
{
    if (sa == NULL) {
        snprintf(buf, FWX__SA_STRLEN, "(none)");
    } else if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, FWX__SA_STRLEN);
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, FWX__SA_STRLEN);
    } else {
        snprintf(buf, FWX__SA_STRLEN, "(family %d)", sa->sa_family);
    }
    return buf;
}

const char *fwx__sa_fmt(const struct sockaddr *sa, char buf[FWX__SA_STRLEN])
{
    char ip[FWX__SA_STRLEN];
    if (sa == NULL || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
        return fwx__sa_fmt_ip(sa, buf);
    fwx__sa_fmt_ip(sa, ip);
    /* inet_ntop writes at most INET6_ADDRSTRLEN (46) bytes, so this always fits. */
    ip[INET6_ADDRSTRLEN] = '\0';
    if (sa->sa_family == AF_INET6)
        snprintf(buf, FWX__SA_STRLEN, "[%.46s]:%u", ip, fwx__sa_port(sa));
    else
        snprintf(buf, FWX__SA_STRLEN, "%.46s:%u", ip, fwx__sa_port(sa));
    return buf;
}

/* Strict decimal port: 1-5 digits, no sign, no leading zero unless "0", <= 65535. */
static bool parse_port(const char *s, uint16_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

bool fwx__sa_parse(const char *text, int need_port, struct sockaddr_storage *out)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *port = NULL;
    size_t n;
    if (text == NULL)
        return false;
    memset(out, 0, sizeof *out);
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL)
            return false;
        n = (size_t)(close - text - 1);
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0')
            return false;
        text++;
    } else {
        const char *colon = strchr(text, ':');
        /* One colon: IPv4 with a port. More: a bare IPv6 address (no port possible). */
        if (colon != NULL && strchr(colon + 1, ':') == NULL) {
            n = (size_t)(colon - text);
            port = colon + 1;
        } else {
            n = strlen(text);
        }
    }
    if (n == 0 || n >= sizeof host)
        return false;
    memcpy(host, text, n);
    host[n] = '\0';
    if ((need_port == 1 && port == NULL) || (need_port == 0 && port != NULL))
        return false;
    uint16_t p = 0;
    if (port != NULL && !parse_port(port, &p))
        return false;
    struct sockaddr_in *s4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
    /* inet_pton(AF_INET) accepts only dotted quads of decimal numbers: no octal, no hex. */
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(p);
        return true;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(p);
        return true;
    }
    return false;
}

uint64_t fwx__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
