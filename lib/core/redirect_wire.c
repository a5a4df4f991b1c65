/*
 * fwx - redirect tracking: the wire form of a record (the layout is documented at
 * fwx_redirect_record_serialize() in fwx/redirect.h).
 *
 * The parser reads bytes that another process wrote, maybe a hostile one: every length is
 * checked before it is used, every reserved bit must be zero, and anything left over is an
 * error, so that one byte string has exactly one meaning (ftp-proxy's rule for PORT).
 * SPDX-License-Identifier: MIT
 */
#include "core/redirect_impl.h"

#include <arpa/inet.h>
#include <stdlib.h>

enum {
    P_DST = 1u << 0,
    P_PID = 1u << 1,
    P_UID = 1u << 2,
    P_CGID = 1u << 3,
    P_CGPATH = 1u << 4,
    P_ALL = P_DST | P_PID | P_UID | P_CGID | P_CGPATH,
    H_TARGET = 1u << 0,
    H_ALL = H_TARGET,
};

static const uint8_t magic[3] = {'F', 'X', 'R'};

/* ---- writing ----------------------------------------------------------------------------- */

typedef struct wbuf {
    uint8_t *p;   /* NULL: only count */
    size_t n;
} wbuf;

static void put(wbuf *w, const void *src, size_t n)
{
    if (w->p != NULL)
        memcpy(w->p + w->n, src, n);
    w->n += n;
}

static void put_u8(wbuf *w, uint8_t v) { put(w, &v, 1); }

static void put_be(wbuf *w, uint64_t v, size_t bytes)
{
    uint8_t b[8];
    for (size_t i = 0; i < bytes; i++)
        b[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    put(w, b, bytes);
}

static void put_addr(wbuf *w, const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        put_u8(w, 4);
        put(w, &s4->sin_addr, 4);
        put(w, &s4->sin_port, 2); /* already big-endian */
    } else {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        put_u8(w, 6);
        put(w, &s6->sin6_addr, 16);
        put(w, &s6->sin6_port, 2);
    }
}

static void write_record(const fwx_redirect_record *rec, wbuf *w)
{
    uint8_t present = (rec->has_orig_dst ? P_DST : 0) | (rec->pid != 0 ? P_PID : 0) |
                      (rec->uid != FWX_REDIRECT_UID_UNKNOWN ? P_UID : 0) | (rec->cgroup_id != 0 ? P_CGID : 0) |
                      (rec->cgroup_path != NULL ? P_CGPATH : 0);
    put(w, magic, sizeof magic);
    put_u8(w, FWX_REDIRECT_WIRE_VERSION);
    put_u8(w, present);
    put_u8(w, (uint8_t)rec->n_hops);
    if (present & P_DST)
        put_addr(w, &rec->orig_dst);
    if (present & P_PID)
        put_be(w, rec->pid, 4);
    if (present & P_UID)
        put_be(w, rec->uid, 4);
    if (present & P_CGID)
        put_be(w, rec->cgroup_id, 8);
    if (present & P_CGPATH) {
        size_t n = strlen(rec->cgroup_path); /* bounded by fwx_redirect_record_new() */
        put_be(w, n, 2);
        put(w, rec->cgroup_path, n);
    }
    for (size_t i = 0; i < rec->n_hops; i++) {
        const fwx__hop *hop = rec->hops[i];
        put(w, hop->provider.bytes, sizeof hop->provider.bytes);
        put_u8(w, hop->has_target ? H_TARGET : 0);
        if (hop->has_target)
            put_addr(w, &hop->target);
    }
}

fwx_result fwx_redirect_record_serialize(const fwx_redirect_record *rec, void *buf, size_t size, size_t *len)
{
    if (rec == NULL || len == NULL)
        return FWX_E_POINTER;
    wbuf w = {NULL, 0};
    write_record(rec, &w); /* count first, so that nothing is written into a short buffer */
    *len = w.n;
    if (buf == NULL || size < w.n)
        return FWX_E_BUFFERFULL;
    w.p = buf;
    w.n = 0;
    write_record(rec, &w);
    return FWX_S_OK;
}

/* ---- reading ----------------------------------------------------------------------------- */

typedef struct rbuf {
    const uint8_t *p;
    size_t left;
} rbuf;

static bool take(rbuf *r, void *dst, size_t n)
{
    if (r->left < n)
        return false;
    memcpy(dst, r->p, n);
    r->p += n;
    r->left -= n;
    return true;
}

static bool take_be(rbuf *r, uint64_t *v, size_t bytes)
{
    uint8_t b[8];
    if (!take(r, b, bytes))
        return false;
    *v = 0;
    for (size_t i = 0; i < bytes; i++)
        *v = *v << 8 | b[i];
    return true;
}

/* An endpoint as put_addr() writes it; port 0 is refused as in fwx_redirect_record_new(). */
static bool take_addr(rbuf *r, struct sockaddr_storage *ss)
{
    uint8_t family;
    memset(ss, 0, sizeof *ss);
    if (!take(r, &family, 1))
        return false;
    if (family == 4) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        if (!take(r, &s4->sin_addr, 4) || !take(r, &s4->sin_port, 2))
            return false;
        return s4->sin_port != 0;
    }
    if (family == 6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        if (!take(r, &s6->sin6_addr, 16) || !take(r, &s6->sin6_port, 2))
            return false;
        /* One meaning per address: the v4-mapped form of an IPv4 host is written as IPv4. */
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
            return false;
        return s6->sin6_port != 0;
    }
    return false;
}

/* Fills rec from r; a failure code on any malformation (the caller's unref frees what was read). */
static fwx_result read_record(rbuf *r, fwx_redirect_record *rec)
{
    uint8_t head[6];
    uint64_t v;
    if (!take(r, head, sizeof head) || memcmp(head, magic, sizeof magic) != 0)
        return FWX_E_INVALIDARG;
    if (head[3] != FWX_REDIRECT_WIRE_VERSION)
        return FWX_E_NOT_SUPPORTED;
    uint8_t present = head[4], n_hops = head[5];
    if ((present & ~P_ALL) != 0 || n_hops > FWX_REDIRECT_MAX_HOPS)
        return FWX_E_INVALIDARG;
    if (present & P_DST) {
        if (!take_addr(r, &rec->orig_dst))
            return FWX_E_INVALIDARG;
        rec->has_orig_dst = true;
    }
    /* A field written as present must hold a real value: "unknown" is written by leaving it out. */
    if (present & P_PID) {
        if (!take_be(r, &v, 4) || v == 0)
            return FWX_E_INVALIDARG;
        rec->pid = (uint32_t)v;
    }
    if (present & P_UID) {
        if (!take_be(r, &v, 4) || v == FWX_REDIRECT_UID_UNKNOWN)
            return FWX_E_INVALIDARG;
        rec->uid = (uint32_t)v;
    }
    if (present & P_CGID) {
        if (!take_be(r, &v, 8) || v == 0)
            return FWX_E_INVALIDARG;
        rec->cgroup_id = v;
    }
    if (present & P_CGPATH) {
        if (!take_be(r, &v, 2) || v == 0 || v > FWX_REDIRECT_CGROUP_PATH_MAX || r->left < v)
            return FWX_E_INVALIDARG;
        if (memchr(r->p, '\0', (size_t)v) != NULL)
            return FWX_E_INVALIDARG;
        if ((rec->cgroup_path = strndup((const char *)r->p, (size_t)v)) == NULL)
            return FWX_E_OUTOFMEMORY;
        r->p += v;
        r->left -= (size_t)v;
    }
    for (uint8_t i = 0; i < n_hops; i++) {
        fwx_guid provider;
        uint8_t flags;
        struct sockaddr_storage target;
        if (!take(r, provider.bytes, sizeof provider.bytes) || !take(r, &flags, 1) || (flags & ~H_ALL) != 0)
            return FWX_E_INVALIDARG;
        if ((flags & H_TARGET) && !take_addr(r, &target))
            return FWX_E_INVALIDARG;
        /* The loop invariant holds for foreign records too: a provider at most once. */
        if (fwx_guid_equal(&provider, &FWX_GUID_NULL))
            return FWX_E_INVALIDARG;
        for (size_t j = 0; j < rec->n_hops; j++)
            if (fwx_guid_equal(&rec->hops[j]->provider, &provider))
                return FWX_E_INVALIDARG;
        if (!fwx__redirect_record_add_foreign(rec, &provider, (flags & H_TARGET) ? &target : NULL))
            return FWX_E_OUTOFMEMORY;
    }
    return r->left == 0 ? FWX_S_OK : FWX_E_INVALIDARG;
}

fwx_result fwx_redirect_record_parse(const void *buf, size_t len, fwx_redirect_record **out)
{
    if (out == NULL)
        return FWX_E_POINTER;
    *out = NULL;
    if (buf == NULL)
        return FWX_E_POINTER;
    fwx_redirect_record *rec = fwx__redirect_record_alloc();
    if (rec == NULL)
        return FWX_E_OUTOFMEMORY;
    rbuf r = {buf, len};
    fwx_result hr = read_record(&r, rec);
    if (FWX_FAILED(hr)) {
        fwx_redirect_record_unref(rec);
        return hr;
    }
    *out = rec;
    return FWX_S_OK;
}
