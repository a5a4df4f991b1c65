/*
 * fwx - IFWXIpFilter, the core's set of IP address ranges.
 * SPDX-License-Identifier: MIT
 *
 * A filter keeps two sets, included and excluded, each as per-family lists of sorted,
 * disjoint, non-adjacent closed intervals. The effective set is included minus excluded:
 * an exclusion wins whatever the order of the calls (sdk.h: "in an included range or filter
 * and in no excluded one"). Keeping the lists normalised makes IsIncluded a binary search and
 * Compare a plain comparison of two normalised lists.
 *
 * v4-mapped IPv6 addresses (::ffff:a.b.c.d) are the IPv4 host everywhere in fwx, so the part of
 * an IPv6 range that falls in ::ffff:0:0/96 is stored in the IPv4 list instead. The IPv6 list
 * never holds that block, and each address has exactly one place it can be found.
 */
#include "objects/objects.h"

#include <arpa/inet.h>
#include <stdlib.h>

/* An address as a 128-bit unsigned number: IPv4 in lo, IPv6 big-endian across hi:lo. */
typedef struct u128 {
    uint64_t hi, lo;
} u128;

typedef struct ipf_range {
    u128 first, last; /* inclusive */
} ipf_range;

typedef struct ipf_list {
    ipf_range *v;
    uint32_t n, cap;
} ipf_list;

enum { FAM_V4 = 0, FAM_V6 = 1, FAM_COUNT = 2 };

/* A bound on intervals per list so that counts and allocation sizes cannot overflow; far
   beyond any filter a protocol filter builds. */
#define IPF_MAX_RANGES (1u << 24)

typedef struct ipfilter {
    IFWXIpFilter iface;
    atomic_uint ref;
    ipf_list inc[FAM_COUNT];
    ipf_list exc[FAM_COUNT];
} ipfilter;

static const IFWXIpFilterVtbl ipfilter_vtbl;

static ipfilter *impl_from_IFWXIpFilter(IFWXIpFilter *iface)
{
    return fwx__container_of(iface, ipfilter, iface);
}

/* ---- 128-bit arithmetic ----------------------------------------------------------------- */

static int u128_cmp(u128 a, u128 b)
{
    if (a.hi != b.hi)
        return a.hi < b.hi ? -1 : 1;
    if (a.lo != b.lo)
        return a.lo < b.lo ? -1 : 1;
    return 0;
}

static bool u128_is_max(u128 a)
{
    return a.hi == UINT64_MAX && a.lo == UINT64_MAX;
}

static bool u128_is_zero(u128 a)
{
    return a.hi == 0 && a.lo == 0;
}

/* Callers check u128_is_max / u128_is_zero first. */
static u128 u128_inc(u128 a)
{
    a.lo++;
    if (a.lo == 0)
        a.hi++;
    return a;
}

static u128 u128_dec(u128 a)
{
    if (a.lo == 0)
        a.hi--;
    a.lo--;
    return a;
}

static u128 u128_min(u128 a, u128 b)
{
    return u128_cmp(a, b) <= 0 ? a : b;
}

static u128 u128_max(u128 a, u128 b)
{
    return u128_cmp(a, b) >= 0 ? a : b;
}

/* True when [.., a_last] and [b_first, ..] touch or overlap (b_first >= some a_first). */
static bool touches(u128 a_last, u128 b_first)
{
    if (u128_cmp(b_first, a_last) <= 0)
        return true;
    return !u128_is_max(a_last) && u128_cmp(b_first, u128_inc(a_last)) == 0;
}

/* ::ffff:0.0.0.0 .. ::ffff:255.255.255.255 */
static const u128 MAPPED_FIRST = { 0, 0x0000FFFF00000000ull };
static const u128 MAPPED_LAST = { 0, 0x0000FFFFFFFFFFFFull };

/* ---- addresses -------------------------------------------------------------------------- */

static uint64_t load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Canonicalises sa (v4-mapped becomes IPv4; port and scope dropped) into a family and key. */
static bool addr_key(const struct sockaddr *sa, uint32_t len, int *fam, u128 *key)
{
    struct sockaddr_storage ss;
    if (!fwx__sa_canon(sa, len, &ss))
        return false;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
        *fam = FAM_V4;
        key->hi = 0;
        key->lo = ntohl(s4->sin_addr.s_addr);
        return true;
    }
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
    *fam = FAM_V6;
    key->hi = load_be64(&s6->sin6_addr.s6_addr[0]);
    key->lo = load_be64(&s6->sin6_addr.s6_addr[8]);
    return true;
}

/* ---- interval lists --------------------------------------------------------------------- */

static void list_free(ipf_list *l)
{
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

static bool list_reserve(ipf_list *l, uint32_t need)
{
    if (need <= l->cap)
        return true;
    if (need > IPF_MAX_RANGES)
        return false;
    uint32_t cap = l->cap ? l->cap : 4;
    while (cap < need) /* bounded: cap doubles up to IPF_MAX_RANGES */
        cap *= 2;
    ipf_range *v = realloc(l->v, (size_t)cap * sizeof *v);
    if (v == NULL)
        return false;
    l->v = v;
    l->cap = cap;
    return true;
}

static bool list_copy(ipf_list *dst, const ipf_list *src)
{
    dst->v = NULL;
    dst->n = dst->cap = 0;
    if (src->n == 0)
        return true;
    if (!list_reserve(dst, src->n))
        return false;
    memcpy(dst->v, src->v, (size_t)src->n * sizeof *src->v);
    dst->n = src->n;
    return true;
}

/* Index of the first range whose last >= key (n if none). */
static uint32_t list_lower_bound(const ipf_list *l, u128 key)
{
    uint32_t lo = 0, hi = l->n;
    while (lo < hi) { /* bounded: halves each turn */
        uint32_t mid = lo + (hi - lo) / 2;
        if (u128_cmp(l->v[mid].last, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool list_contains(const ipf_list *l, u128 key)
{
    uint32_t i = list_lower_bound(l, key);
    return i < l->n && u128_cmp(l->v[i].first, key) <= 0;
}

/* Adds [first, last] (first <= last), merging with every range it touches. */
static bool list_add(ipf_list *l, u128 first, u128 last)
{
    /* The first range that could touch: its last is >= first - 1. */
    uint32_t i = u128_is_zero(first) ? 0 : list_lower_bound(l, u128_dec(first));
    uint32_t j = i;
    while (j < l->n && touches(last, l->v[j].first)) /* bounded by n */
        j++;
    if (j > i) {
        /* Ranges i..j-1 merge into one, stored at i. */
        first = u128_min(first, l->v[i].first);
        last = u128_max(last, l->v[j - 1].last);
        l->v[i].first = first;
        l->v[i].last = last;
        memmove(&l->v[i + 1], &l->v[j], (size_t)(l->n - j) * sizeof *l->v);
        l->n -= j - i - 1;
        return true;
    }
    if (!list_reserve(l, l->n + 1))
        return false;
    memmove(&l->v[i + 1], &l->v[i], (size_t)(l->n - i) * sizeof *l->v);
    l->v[i].first = first;
    l->v[i].last = last;
    l->n++;
    return true;
}

/* out = a minus b, both normalised; out is normalised too. */
static bool list_subtract(const ipf_list *a, const ipf_list *b, ipf_list *out)
{
    out->v = NULL;
    out->n = out->cap = 0;
    uint32_t j = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        u128 first = a->v[i].first, last = a->v[i].last;
        bool empty = false;
        /* Skip exclusions wholly below this range; j never moves back, so the two loops
           together are bounded by a->n + b->n. */
        while (j < b->n && u128_cmp(b->v[j].last, first) < 0)
            j++;
        uint32_t k = j;
        while (!empty && k < b->n && u128_cmp(b->v[k].first, last) <= 0) {
            const ipf_range *x = &b->v[k];
            if (u128_cmp(x->first, first) > 0) {
                /* The piece before this exclusion survives. */
                if (!list_reserve(out, out->n + 1))
                    goto fail;
                out->v[out->n].first = first;
                out->v[out->n].last = u128_dec(x->first);
                out->n++;
            }
            if (u128_cmp(x->last, last) >= 0 || u128_is_max(x->last))
                empty = true;
            else
                first = u128_inc(x->last);
            k++;
        }
        if (!empty) {
            if (!list_reserve(out, out->n + 1))
                goto fail;
            out->v[out->n].first = first;
            out->v[out->n].last = last;
            out->n++;
        }
    }
    return true;
fail:
    list_free(out);
    return false;
}

static bool list_equal(const ipf_list *a, const ipf_list *b)
{
    if (a->n != b->n)
        return false;
    for (uint32_t i = 0; i < a->n; i++) {
        if (u128_cmp(a->v[i].first, b->v[i].first) != 0 || u128_cmp(a->v[i].last, b->v[i].last) != 0)
            return false;
    }
    return true;
}

/* Adds a range of family fam to a pair of lists, moving the v4-mapped part of an IPv6 range
   to the IPv4 list. */
static bool sets_add(ipf_list lists[FAM_COUNT], int fam, u128 first, u128 last)
{
    if (fam == FAM_V4)
        return list_add(&lists[FAM_V4], first, last);
    if (u128_cmp(first, MAPPED_FIRST) < 0) {
        if (!list_add(&lists[FAM_V6], first, u128_min(last, u128_dec(MAPPED_FIRST))))
            return false;
    }
    if (u128_cmp(first, MAPPED_LAST) <= 0 && u128_cmp(last, MAPPED_FIRST) >= 0) {
        u128 f = u128_max(first, MAPPED_FIRST), l = u128_min(last, MAPPED_LAST);
        u128 f4 = { 0, f.lo & 0xFFFFFFFFu }, l4 = { 0, l.lo & 0xFFFFFFFFu };
        if (!list_add(&lists[FAM_V4], f4, l4))
            return false;
    }
    if (u128_cmp(last, MAPPED_LAST) > 0) {
        if (!list_add(&lists[FAM_V6], u128_max(first, u128_inc(MAPPED_LAST)), last))
            return false;
    }
    return true;
}

/* The effective set (included minus excluded) of f, one list per family. */
static bool effective(const ipfilter *f, ipf_list out[FAM_COUNT])
{
    if (!list_subtract(&f->inc[FAM_V4], &f->exc[FAM_V4], &out[FAM_V4]))
        return false;
    if (!list_subtract(&f->inc[FAM_V6], &f->exc[FAM_V6], &out[FAM_V6])) {
        list_free(&out[FAM_V4]);
        return false;
    }
    return true;
}

/* ---- IUnknown --------------------------------------------------------------------------- */

static fwx_result ipfilter_QueryInterface(IFWXIpFilter *This, const fwx_guid *riid, void **ppv)
{
    if (ppv == NULL)
        return FWX_E_POINTER;
    *ppv = NULL;
    if (This == NULL || riid == NULL)
        return FWX_E_POINTER;
    if (!fwx_guid_equal(riid, &IID_IUnknown) && !fwx_guid_equal(riid, &IID_IFWXIpFilter))
        return FWX_E_NOINTERFACE;
    This->lpVtbl->AddRef(This);
    *ppv = This;
    return FWX_S_OK;
}

static uint32_t ipfilter_AddRef(IFWXIpFilter *This)
{
    ipfilter *f = impl_from_IFWXIpFilter(This);
    return atomic_fetch_add_explicit(&f->ref, 1, memory_order_relaxed) + 1;
}

static void ipfilter_free(ipfilter *f)
{
    for (int i = 0; i < FAM_COUNT; i++) {
        list_free(&f->inc[i]);
        list_free(&f->exc[i]);
    }
    free(f);
}

static uint32_t ipfilter_Release(IFWXIpFilter *This)
{
    ipfilter *f = impl_from_IFWXIpFilter(This);
    uint32_t left = atomic_fetch_sub_explicit(&f->ref, 1, memory_order_acq_rel) - 1;
    if (left == 0)
        ipfilter_free(f);
    return left;
}

/* ---- IFWXIpFilter ----------------------------------------------------------------------- */

static fwx_result add_range(ipf_list lists[FAM_COUNT], const struct sockaddr *First, uint32_t FirstLength,
                            const struct sockaddr *Last, uint32_t LastLength)
{
    if (First == NULL || Last == NULL)
        return FWX_E_POINTER;
    int ff, lf;
    u128 fk, lk;
    if (!addr_key(First, FirstLength, &ff, &fk) || !addr_key(Last, LastLength, &lf, &lk))
        return FWX_E_INVALIDARG;
    if (ff != lf || u128_cmp(fk, lk) > 0)
        return FWX_E_INVALIDARG;
    /* Work on a copy so that a failed allocation leaves the filter as it was. */
    ipf_list tmp[FAM_COUNT];
    if (!list_copy(&tmp[FAM_V4], &lists[FAM_V4]))
        return FWX_E_OUTOFMEMORY;
    if (!list_copy(&tmp[FAM_V6], &lists[FAM_V6])) {
        list_free(&tmp[FAM_V4]);
        return FWX_E_OUTOFMEMORY;
    }
    if (!sets_add(tmp, ff, fk, lk)) {
        list_free(&tmp[FAM_V4]);
        list_free(&tmp[FAM_V6]);
        return FWX_E_OUTOFMEMORY;
    }
    for (int i = 0; i < FAM_COUNT; i++) {
        list_free(&lists[i]);
        lists[i] = tmp[i];
    }
    return FWX_S_OK;
}

static fwx_result ipfilter_IncludeRange(IFWXIpFilter *This, const struct sockaddr *First, uint32_t FirstLength,
                                        const struct sockaddr *Last, uint32_t LastLength)
{
    if (This == NULL)
        return FWX_E_POINTER;
    return add_range(impl_from_IFWXIpFilter(This)->inc, First, FirstLength, Last, LastLength);
}

static fwx_result ipfilter_ExcludeRange(IFWXIpFilter *This, const struct sockaddr *First, uint32_t FirstLength,
                                        const struct sockaddr *Last, uint32_t LastLength)
{
    if (This == NULL)
        return FWX_E_POINTER;
    return add_range(impl_from_IFWXIpFilter(This)->exc, First, FirstLength, Last, LastLength);
}

/* Adds other's effective set to lists (This's include or exclude set). */
static fwx_result add_filter(ipf_list lists[FAM_COUNT], IFWXIpFilter *pOther)
{
    if (pOther == NULL)
        return FWX_E_POINTER;
    /* Another implementation's set cannot be enumerated through the interface. */
    if (!fwx__ipfilter_is_ours(pOther))
        return FWX_E_INVALIDARG;
    /* Computed before anything changes, so pOther may be This itself. */
    ipf_list eff[FAM_COUNT];
    if (!effective(impl_from_IFWXIpFilter(pOther), eff))
        return FWX_E_OUTOFMEMORY;
    ipf_list tmp[FAM_COUNT];
    fwx_result hr = FWX_E_OUTOFMEMORY;
    if (!list_copy(&tmp[FAM_V4], &lists[FAM_V4]))
        goto out_eff;
    if (!list_copy(&tmp[FAM_V6], &lists[FAM_V6])) {
        list_free(&tmp[FAM_V4]);
        goto out_eff;
    }
    for (int fam = 0; fam < FAM_COUNT; fam++) {
        for (uint32_t i = 0; i < eff[fam].n; i++) {
            if (!list_add(&tmp[fam], eff[fam].v[i].first, eff[fam].v[i].last)) {
                list_free(&tmp[FAM_V4]);
                list_free(&tmp[FAM_V6]);
                goto out_eff;
            }
        }
    }
    for (int i = 0; i < FAM_COUNT; i++) {
        list_free(&lists[i]);
        lists[i] = tmp[i];
    }
    hr = FWX_S_OK;
out_eff:
    list_free(&eff[FAM_V4]);
    list_free(&eff[FAM_V6]);
    return hr;
}

static fwx_result ipfilter_IncludeFilter(IFWXIpFilter *This, IFWXIpFilter *pOther)
{
    if (This == NULL)
        return FWX_E_POINTER;
    return add_filter(impl_from_IFWXIpFilter(This)->inc, pOther);
}

static fwx_result ipfilter_ExcludeFilter(IFWXIpFilter *This, IFWXIpFilter *pOther)
{
    if (This == NULL)
        return FWX_E_POINTER;
    return add_filter(impl_from_IFWXIpFilter(This)->exc, pOther);
}

static fwx_result ipfilter_IsIncluded(IFWXIpFilter *This, const struct sockaddr *Address, uint32_t AddressLength)
{
    if (This == NULL || Address == NULL)
        return FWX_E_POINTER;
    ipfilter *f = impl_from_IFWXIpFilter(This);
    int fam;
    u128 key;
    if (!addr_key(Address, AddressLength, &fam, &key))
        return FWX_E_INVALIDARG;
    if (list_contains(&f->inc[fam], key) && !list_contains(&f->exc[fam], key))
        return FWX_S_OK;
    return FWX_S_FALSE;
}

static fwx_result ipfilter_Compare(IFWXIpFilter *This, IFWXIpFilter *pOther)
{
    if (This == NULL || pOther == NULL)
        return FWX_E_POINTER;
    if (!fwx__ipfilter_is_ours(pOther))
        return FWX_E_INVALIDARG;
    if (pOther == This)
        return FWX_S_OK;
    ipf_list a[FAM_COUNT], b[FAM_COUNT];
    if (!effective(impl_from_IFWXIpFilter(This), a))
        return FWX_E_OUTOFMEMORY;
    if (!effective(impl_from_IFWXIpFilter(pOther), b)) {
        list_free(&a[FAM_V4]);
        list_free(&a[FAM_V6]);
        return FWX_E_OUTOFMEMORY;
    }
    bool same = list_equal(&a[FAM_V4], &b[FAM_V4]) && list_equal(&a[FAM_V6], &b[FAM_V6]);
    for (int i = 0; i < FAM_COUNT; i++) {
        list_free(&a[i]);
        list_free(&b[i]);
    }
    return same ? FWX_S_OK : FWX_S_FALSE;
}

static fwx_result ipfilter_Clone(IFWXIpFilter *This, IFWXIpFilter **ppClone)
{
    if (ppClone == NULL)
        return FWX_E_POINTER;
    *ppClone = NULL;
    if (This == NULL)
        return FWX_E_POINTER;
    ipfilter *src = impl_from_IFWXIpFilter(This);
    IFWXIpFilter *iface;
    fwx_result hr = fwx__ipfilter_new(&iface);
    if (FWX_FAILED(hr))
        return hr;
    ipfilter *dst = impl_from_IFWXIpFilter(iface);
    for (int i = 0; i < FAM_COUNT; i++) {
        if (!list_copy(&dst->inc[i], &src->inc[i]) || !list_copy(&dst->exc[i], &src->exc[i])) {
            iface->lpVtbl->Release(iface);
            return FWX_E_OUTOFMEMORY;
        }
    }
    *ppClone = iface;
    return FWX_S_OK;
}

static const IFWXIpFilterVtbl ipfilter_vtbl = {
    ipfilter_QueryInterface, ipfilter_AddRef,     ipfilter_Release, ipfilter_IncludeRange,
    ipfilter_ExcludeRange,   ipfilter_IncludeFilter, ipfilter_ExcludeFilter, ipfilter_IsIncluded,
    ipfilter_Compare,        ipfilter_Clone,
};

fwx_result fwx__ipfilter_new(IFWXIpFilter **out)
{
    if (out == NULL)
        return FWX_E_POINTER;
    *out = NULL;
    ipfilter *f = calloc(1, sizeof *f);
    if (f == NULL)
        return FWX_E_OUTOFMEMORY;
    f->iface.lpVtbl = &ipfilter_vtbl;
    atomic_init(&f->ref, 1);
    *out = &f->iface;
    return FWX_S_OK;
}

bool fwx__ipfilter_is_ours(IFWXIpFilter *f)
{
    return f != NULL && f->lpVtbl == &ipfilter_vtbl;
}
