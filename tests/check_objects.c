/*
 * fwx tests - the core's own objects (IFWXIpFilter, IFWXIOBuffer), result codes and GUIDs.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "objects/objects.h"

#include <errno.h>
#include <stdio.h>
#include <uv.h>
#include <stdlib.h>

/* ---- helpers ---------------------------------------------------------------------------- */

/* Includes or excludes text range lo..hi (either may carry a port). */
static fwx_result inc(IFWXIpFilter *f, const char *lo, const char *hi)
{
    struct sockaddr_storage a = tu_addr(lo), b = tu_addr(hi);
    return IFWXIpFilter_IncludeRange(f, TU_SA(a), tu_len(&a), TU_SA(b), tu_len(&b));
}

static fwx_result exc(IFWXIpFilter *f, const char *lo, const char *hi)
{
    struct sockaddr_storage a = tu_addr(lo), b = tu_addr(hi);
    return IFWXIpFilter_ExcludeRange(f, TU_SA(a), tu_len(&a), TU_SA(b), tu_len(&b));
}

static fwx_result has(IFWXIpFilter *f, const char *addr)
{
    struct sockaddr_storage a = tu_addr(addr);
    return IFWXIpFilter_IsIncluded(f, TU_SA(a), tu_len(&a));
}

/* Asserts that f includes every address given (EXPECT_IN) or none of them (EXPECT_OUT). */
static void expect_has(IFWXIpFilter *f, fwx_result want, const char *const *addrs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fwx_result got = has(f, addrs[i]);
        ck_assert_msg(got == want, "%s: %s, want %s", addrs[i], fwx_err_name(got), fwx_err_name(want));
    }
}
#define EXPECT_HAS_(f, want, ...)                                                                 \
    expect_has((f), (want), (const char *const[]){__VA_ARGS__},                                   \
               sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))
/* Applies each range to f in order, asserting FWX_S_OK: "+lo hi" includes lo..hi, "-lo hi"
   excludes it; "+a" and "-a" are the one address. */
static void ranges(IFWXIpFilter *f, const char *const *spec, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char lo[64];
        const char *sp = strchr(spec[i], ' ');
        size_t l = sp != NULL ? (size_t)(sp - spec[i] - 1) : strlen(spec[i] + 1);
        ck_assert(l < sizeof lo && (spec[i][0] == '+' || spec[i][0] == '-'));
        memcpy(lo, spec[i] + 1, l);
        lo[l] = '\0';
        const char *hi = sp != NULL ? sp + 1 : lo;
        fwx_result got = spec[i][0] == '+' ? inc(f, lo, hi) : exc(f, lo, hi);
        ck_assert_msg(got == FWX_S_OK, "%s: %s", spec[i], fwx_err_name(got));
    }
}
#define RANGES(f, ...)                                                                            \
    ranges((f), (const char *const[]){__VA_ARGS__}, sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))
/* QueryInterface's bad arguments on obj (qi its wrapper): no out pointer, or no IID (the out
   pointer set to NULL), each FWX_E_POINTER. */
#define EXPECT_QI_BAD_ARGS(qi, obj)                                                               \
    do {                                                                                          \
        void *qi_pv_ = (void *)(uintptr_t)1;                                                      \
        TU_EXPECT_HR(qi((obj), &IID_IUnknown, NULL), FWX_E_POINTER);                              \
        TU_EXPECT_HR(qi((obj), NULL, &qi_pv_), FWX_E_POINTER);                                    \
        ck_assert_ptr_null(qi_pv_);                                                               \
    } while (0)

/* Releases each filter, asserting that was its last reference. */
static void release_all(IFWXIpFilter *const *fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(IFWXIpFilter_Release(fs[i]) == 0, "filter %zu still referenced", i);
}
#define RELEASE_ALL(...)                                                                          \
    release_all((IFWXIpFilter *const[]){__VA_ARGS__}, sizeof((IFWXIpFilter *const[]){__VA_ARGS__}) / sizeof(IFWXIpFilter *))
#define EXPECT_IN(f, ...) EXPECT_HAS_((f), FWX_S_OK, __VA_ARGS__)
#define EXPECT_OUT(f, ...) EXPECT_HAS_((f), FWX_S_FALSE, __VA_ARGS__)

static IFWXIpFilter *new_filter(void)
{
    IFWXIpFilter *f = (IFWXIpFilter *)(uintptr_t)1;
    TU_EXPECT_HR(fwx__ipfilter_new(&f), FWX_S_OK);
    ck_assert_ptr_nonnull(f);
    TU_EXPECT_REF(f, 1);
    return f;
}

static IFWXIOBuffer *new_buffer(uint32_t size)
{
    IFWXIOBuffer *b = NULL;
    TU_EXPECT_HR(fwx__iobuffer_new(size, &b), FWX_S_OK);
    ck_assert_ptr_nonnull(b);
    TU_EXPECT_REF(b, 1);
    return b;
}

/* A v4 address as sockaddr_in from a host-order number. */
static struct sockaddr_storage v4(uint32_t host)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(host);
    return ss;
}

/* ---- a foreign IFWXIpFilter (a filter's own implementation) ------------------------------ */

typedef struct foreign_ipf {
    IFWXIpFilter iface;
    uint32_t ref;
} foreign_ipf;

static fwx_result fipf_qi(IFWXIpFilter *This, const fwx_guid *riid, void **ppv)
{
    (void)This;
    (void)riid;
    *ppv = NULL;
    return FWX_E_NOINTERFACE;
}
static uint32_t fipf_addref(IFWXIpFilter *This) { return ++((foreign_ipf *)(void *)This)->ref; }
static uint32_t fipf_release(IFWXIpFilter *This) { return --((foreign_ipf *)(void *)This)->ref; }
static fwx_result fipf_range(IFWXIpFilter *This, const struct sockaddr *a, uint32_t al, const struct sockaddr *b,
                             uint32_t bl)
{
    (void)This, (void)a, (void)al, (void)b, (void)bl;
    return FWX_E_NOTIMPL;
}
static fwx_result fipf_filter(IFWXIpFilter *This, IFWXIpFilter *o)
{
    (void)This, (void)o;
    return FWX_E_NOTIMPL;
}
static fwx_result fipf_isinc(IFWXIpFilter *This, const struct sockaddr *a, uint32_t al)
{
    (void)This, (void)a, (void)al;
    return FWX_S_OK; /* claims everything */
}
static fwx_result fipf_clone(IFWXIpFilter *This, IFWXIpFilter **o)
{
    (void)This;
    *o = NULL;
    return FWX_E_NOTIMPL;
}
static const IFWXIpFilterVtbl fipf_vtbl = { fipf_qi,     fipf_addref, fipf_release, fipf_range, fipf_range,
                                            fipf_filter, fipf_filter, fipf_isinc,   fipf_filter, fipf_clone };

/* ---- a foreign IFWXIOBuffer that records Append ----------------------------------------- */

typedef struct foreign_buf {
    IFWXIOBuffer iface;
    uint32_t ref;
    uint8_t data[16];
    uint32_t n;
    unsigned appends;
} foreign_buf;

static foreign_buf *fbuf(IFWXIOBuffer *b) { return fwx__container_of(b, foreign_buf, iface); }
static fwx_result fbuf_qi(IFWXIOBuffer *This, const fwx_guid *riid, void **ppv)
{
    (void)This, (void)riid;
    *ppv = NULL;
    return FWX_E_NOINTERFACE;
}
static uint32_t fbuf_addref(IFWXIOBuffer *This) { return ++fbuf(This)->ref; }
static uint32_t fbuf_release(IFWXIOBuffer *This) { return --fbuf(This)->ref; }
static fwx_result fbuf_gbs(IFWXIOBuffer *This, uint8_t **p, uint32_t *n)
{
    *p = fbuf(This)->data;
    *n = fbuf(This)->n;
    return FWX_S_OK;
}
static fwx_result fbuf_sds(IFWXIOBuffer *This, uint32_t n)
{
    (void)This, (void)n;
    return FWX_E_NOTIMPL;
}
static fwx_result fbuf_append(IFWXIOBuffer *This, const void *p, uint32_t n)
{
    foreign_buf *b = fbuf(This);
    b->appends++;
    if (n > sizeof b->data - b->n)
        return FWX_E_BUFFERFULL;
    memcpy(b->data + b->n, p, n);
    b->n += n;
    return FWX_S_OK;
}
static fwx_result fbuf_readat(IFWXIOBuffer *This, uint32_t o, void *p, uint32_t n, uint32_t *got)
{
    (void)This, (void)o, (void)p, (void)n;
    *got = 0;
    return FWX_E_NOTIMPL;
}
static fwx_result fbuf_stb(IFWXIOBuffer *This, IFWXIOBuffer *t)
{
    (void)This, (void)t;
    return FWX_E_NOTIMPL;
}
static fwx_result fbuf_sizes(IFWXIOBuffer *This, uint32_t *a, uint32_t *d)
{
    *a = sizeof fbuf(This)->data;
    *d = fbuf(This)->n;
    return FWX_S_OK;
}
static const IFWXIOBufferVtbl fbuf_vtbl = { fbuf_qi,     fbuf_addref, fbuf_release, fbuf_gbs,  fbuf_sds,
                                            fbuf_append, fbuf_readat, fbuf_stb,     fbuf_sizes };

/* ---- result codes ----------------------------------------------------------------------- */

struct code_row {
    fwx_result code;
    const char *name;
    const char *msg;
};
static const struct code_row code_rows[] = {
#define ROW(name, value, msg) { (fwx_result)(value), "FWX_" #name, msg },
    FWX_RESULT_MAP(ROW)
#undef ROW
};

START_TEST(result_every_code)
{
    for (size_t i = 0; i < FWX__ARRAY_SIZE(code_rows); i++) {
        const struct code_row *r = &code_rows[i];
        ck_assert_str_eq(fwx_err_name(r->code), r->name);
        ck_assert_str_eq(fwx_strerror(r->code), r->msg);
        /* Round trip: the name leads back to exactly this code, and no two rows share a value. */
        size_t same_name = 0;
        for (size_t j = 0; j < FWX__ARRAY_SIZE(code_rows); j++) {
            if (strcmp(code_rows[j].name, r->name) == 0) {
                ck_assert_int_eq(code_rows[j].code, r->code);
                same_name++;
            }
            if (j != i)
                ck_assert_msg(code_rows[j].code != r->code, "%s and %s share a value", r->name, code_rows[j].name);
        }
        ck_assert_uint_eq(same_name, 1);
        /* Success codes are exactly S_OK and S_FALSE. */
        bool ok = r->code == FWX_S_OK || r->code == FWX_S_FALSE;
        ck_assert_int_eq(FWX_SUCCEEDED(r->code), ok);
        ck_assert_int_eq(FWX_FAILED(r->code), !ok);
    }
}
END_TEST

START_TEST(result_unknown_code)
{
    const fwx_result unknown[] = { 2, -1, (fwx_result)0x80004000, (fwx_result)0xC0040000, (fwx_result)0xC00410FF,
                                   INT32_MIN, INT32_MAX };
    for (size_t i = 0; i < FWX__ARRAY_SIZE(unknown); i++) {
        ck_assert_str_eq(fwx_err_name(unknown[i]), "FWX_UNKNOWN");
        ck_assert_str_eq(fwx_strerror(unknown[i]), "unknown result code");
    }
}
END_TEST

START_TEST(result_documented_values)
{
    ck_assert_int_eq(FWX_E_TERMINATING, (int32_t)0xC0040001);
    ck_assert_int_eq(FWX_FROM_WIN32(52), FWX_E_DUP_NAME);
    ck_assert_int_eq(FWX_FROM_WIN32(183), FWX_E_ALREADY_EXISTS_WIN32);
    ck_assert_int_eq(FWX_FROM_WIN32(10022), FWX_E_WSAEINVAL);
    ck_assert_int_eq(FWX_FROM_WIN32(87), FWX_E_INVALIDARG);
    ck_assert_str_eq(fwx_err_name(FWX_E_ADDRESS_NOT_ALLOWED), "FWX_E_ADDRESS_NOT_ALLOWED");
}
END_TEST

/* The one libuv/errno mapping: either sign, the codes a caller acts on, the rest its fallback. */
START_TEST(result_from_errno)
{
    ck_assert_int_eq(fwx__result_from_errno(UV_EADDRINUSE, FWX_E_BACKEND), FWX_E_ADDRINUSE);
    ck_assert_int_eq(fwx__result_from_errno(EADDRINUSE, FWX_E_BACKEND), FWX_E_ADDRINUSE);
    ck_assert_int_eq(fwx__result_from_errno(UV_EADDRNOTAVAIL, FWX_E_BACKEND), FWX_E_ADDRNOTAVAIL);
    ck_assert_int_eq(fwx__result_from_errno(UV_ECONNREFUSED, FWX_E_INVALIDARG), FWX_E_CONNREFUSED);
    ck_assert_int_eq(fwx__result_from_errno(UV_ENOMEM, FWX_E_BACKEND), FWX_E_OUTOFMEMORY);
    ck_assert_int_eq(fwx__result_from_errno(UV_EINVAL, FWX_E_BACKEND), FWX_E_INVALIDARG);
    ck_assert_int_eq(fwx__result_from_errno(UV_EACCES, FWX_E_BACKEND), FWX_E_BACKEND);
    ck_assert_int_eq(fwx__result_from_errno(UV_EACCES, FWX_E_INVALIDARG), FWX_E_INVALIDARG);
    ck_assert_int_eq(fwx__result_from_errno(0, FWX_E_FAIL), FWX_E_FAIL);
}
END_TEST

/* ---- GUIDs ------------------------------------------------------------------------------ */

static const fwx_guid sample = FWX_GUID_INIT(0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
                                              0xcc, 0xdd, 0xee, 0xff);

START_TEST(guid_format)
{
    char buf[FWX_GUID_STRLEN];
    memset(buf, 'x', sizeof buf);
    ck_assert_ptr_eq(fwx_guid_format(&sample, buf), buf);
    ck_assert_str_eq(buf, "{00112233-4455-6677-8899-aabbccddeeff}");
    ck_assert_uint_eq(strlen(buf), FWX_GUID_STRLEN - 1);
    ck_assert_str_eq(fwx_guid_format(&IID_IUnknown, buf), "{00000000-0000-0000-c000-000000000046}");
    ck_assert_str_eq(fwx_guid_format(&IID_IFWXIpFilter, buf), "{6b0e6a10-3d1f-4c21-9a01-465758000008}");
}
END_TEST

START_TEST(guid_round_trip)
{
    const fwx_guid *ids[] = { &sample, &FWX_GUID_NULL, &IID_IUnknown, &IID_IClassFactory, &IID_IFWXFilter,
                              &IID_IFWXSessionFilter, &IID_IFWXDataFilter, &IID_IFWXFirewall, &IID_IFWXSession,
                              &IID_IFWXConnection, &IID_IFWXFirewallAction, &IID_IFWXIpFilter, &IID_IFWXIOBuffer,
                              &IID_IFWXSocket, &IID_IFWXNetworkSocket, &IID_IFWXIOCompletion,
                              &IID_IFWXAcceptCompletion, &IID_IFWXUdpDestination };
    for (size_t i = 0; i < FWX__ARRAY_SIZE(ids); i++) {
        char buf[FWX_GUID_STRLEN];
        fwx_guid g;
        fwx_guid_format(ids[i], buf);
        TU_EXPECT_HR(fwx_guid_parse(buf, &g), FWX_S_OK);
        ck_assert(fwx_guid_equal(&g, ids[i]));
        /* Without braces, and in upper case, it is the same GUID. */
        char bare[FWX_GUID_STRLEN];
        memcpy(bare, buf + 1, 36);
        bare[36] = '\0';
        memset(&g, 0, sizeof g);
        TU_EXPECT_HR(fwx_guid_parse(bare, &g), FWX_S_OK);
        ck_assert(fwx_guid_equal(&g, ids[i]));
        for (size_t k = 0; k < 36; k++)
            bare[k] = (char)((bare[k] >= 'a' && bare[k] <= 'f') ? bare[k] - 'a' + 'A' : bare[k]);
        memset(&g, 0, sizeof g);
        TU_EXPECT_HR(fwx_guid_parse(bare, &g), FWX_S_OK);
        ck_assert(fwx_guid_equal(&g, ids[i]));
    }
    /* Bytes in text order. */
    fwx_guid g;
    TU_EXPECT_HR(fwx_guid_parse("{00112233-4455-6677-8899-AABBCCDDEEFF}", &g), FWX_S_OK);
    ck_assert(fwx_guid_equal(&g, &sample));
}
END_TEST

START_TEST(guid_reject_malformed)
{
    static const char *const bad[] = {
        "",
        "{",
        "{}",
        "00112233-4455-6677-8899-aabbccddeef",    /* 35: short */
        "00112233-4455-6677-8899-aabbccddeeff0",  /* 37: long */
        "{00112233-4455-6677-8899-aabbccddeef}",  /* short inside braces */
        "0011223-34455-6677-8899-aabbccddeeff",   /* dash moved */
        "00112233445566778899aabbccddeeff",       /* no dashes */
        "00112233-4455-6677-8899aabbccddeeff-",   /* dash misplaced at the end */
        "0011223g-4455-6677-8899-aabbccddeeff",   /* bad hex */
        "00112233-4455-6677-8899-aabbccddeeGf",   /* bad hex at the end */
        "0x112233-4455-6677-8899-aabbccddeeff",   /* no 0x */
        "+0112233-4455-6677-8899-aabbccddeeff",   /* no signs */
        "{00112233-4455-6677-8899-aabbccddeeff",  /* unbalanced brace */
        "00112233-4455-6677-8899-aabbccddeeff}",  /* unbalanced brace */
        "{00112233-4455-6677-8899-aabbccddeeff}}", /* trailing junk */
        "{{00112233-4455-6677-8899-aabbccddeeff}}",
        "{00112233-4455-6677-8899-aabbccddeeff} ", /* trailing space */
        " {00112233-4455-6677-8899-aabbccddeeff}", /* leading space */
        "00112233-4455-6677-8899-aabbccddeeffx",   /* trailing junk */
        "(00112233-4455-6677-8899-aabbccddeeff)",  /* wrong brackets */
        "00112233-4455-6677-8899-aabbccddee\nff",
    };
    for (size_t i = 0; i < FWX__ARRAY_SIZE(bad); i++) {
        fwx_guid g = sample;
        fwx_result hr = fwx_guid_parse(bad[i], &g);
        ck_assert_msg(hr == FWX_E_INVALIDARG, "\"%s\" parsed: %s", bad[i], fwx_err_name(hr));
        ck_assert_msg(fwx_guid_equal(&g, &sample), "\"%s\": output changed on failure", bad[i]);
    }
    fwx_guid g;
    TU_EXPECT_HR(fwx_guid_parse(NULL, &g), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_guid_parse("00112233-4455-6677-8899-aabbccddeeff", NULL), FWX_E_INVALIDARG);
}
END_TEST

/* ---- IFWXIOBuffer ----------------------------------------------------------------------- */

START_TEST(iobuffer_new)
{
    IFWXIOBuffer *b = (IFWXIOBuffer *)(uintptr_t)1;
    TU_EXPECT_HR(fwx__iobuffer_new(0, &b), FWX_E_INVALIDARG);
    ck_assert_ptr_null(b);
    b = (IFWXIOBuffer *)(uintptr_t)1;
    TU_EXPECT_HR(fwx__iobuffer_new(FWX__IOBUFFER_MAX + 1, &b), FWX_E_INVALIDARG);
    ck_assert_ptr_null(b);
    TU_EXPECT_HR(fwx__iobuffer_new(UINT32_MAX, &b), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx__iobuffer_new(16, NULL), FWX_E_POINTER);

    b = new_buffer(1);
    uint32_t a = 7, d = 7;
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferSizes(b, &a, &d), FWX_S_OK);
    ck_assert_uint_eq(a, 1);
    ck_assert_uint_eq(d, 0);
    ck_assert_uint_eq(IFWXIOBuffer_Release(b), 0);

    b = new_buffer(FWX__IOBUFFER_MAX);
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferSizes(b, &a, &d), FWX_S_OK);
    ck_assert_uint_eq(a, 16u * 1024 * 1024);
    ck_assert_uint_eq(d, 0);
    /* Zero-filled: a data size set without writing exposes no old heap bytes. */
    uint8_t *p = NULL;
    TU_EXPECT_HR(IFWXIOBuffer_SetDataSize(b, a), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferAndSize(b, &p, &d), FWX_S_OK);
    ck_assert_uint_eq(d, a);
    for (uint32_t i = 0; i < a; i += 4093)
        ck_assert_uint_eq(p[i], 0);
    ck_assert_uint_eq(p[a - 1], 0);
    ck_assert_uint_eq(IFWXIOBuffer_Release(b), 0);
}
END_TEST

START_TEST(iobuffer_iunknown)
{
    IFWXIOBuffer *b = new_buffer(32);
    void *pv = (void *)(uintptr_t)1;
    TU_EXPECT_HR(IFWXIOBuffer_QueryInterface(b, &IID_IUnknown, &pv), FWX_S_OK);
    ck_assert_ptr_eq(pv, b);
    TU_EXPECT_REF(b, 2);
    ck_assert_uint_eq(IUnknown_Release((IUnknown *)pv), 1);
    TU_EXPECT_HR(IFWXIOBuffer_QueryInterface(b, &IID_IFWXIOBuffer, &pv), FWX_S_OK);
    ck_assert_ptr_eq(pv, b);
    TU_EXPECT_REF(b, 2);
    ck_assert_uint_eq(IFWXIOBuffer_Release(b), 1);

    const fwx_guid *no[] = { &IID_IFWXIpFilter, &IID_IFWXSocket, &IID_IClassFactory, &FWX_GUID_NULL };
    for (size_t i = 0; i < FWX__ARRAY_SIZE(no); i++) {
        pv = (void *)(uintptr_t)1;
        TU_EXPECT_HR(IFWXIOBuffer_QueryInterface(b, no[i], &pv), FWX_E_NOINTERFACE);
        ck_assert_ptr_null(pv);
        TU_EXPECT_REF(b, 1);
    }
    EXPECT_QI_BAD_ARGS(IFWXIOBuffer_QueryInterface, b);
    TU_EXPECT_REF(b, 1);

    ck_assert_uint_eq(IFWXIOBuffer_AddRef(b), 2);
    ck_assert_uint_eq(IFWXIOBuffer_AddRef(b), 3);
    ck_assert_uint_eq(IFWXIOBuffer_Release(b), 2);
    ck_assert_uint_eq(IFWXIOBuffer_Release(b), 1);
    ck_assert_uint_eq(IFWXIOBuffer_Release(b), 0);
}
END_TEST

START_TEST(iobuffer_get_set_size)
{
    IFWXIOBuffer *b = new_buffer(8);
    uint8_t *p = NULL;
    uint32_t d = 99, a = 99;
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferAndSize(b, &p, &d), FWX_S_OK);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(d, 0);
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferAndSize(b, NULL, &d), FWX_E_POINTER);
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferAndSize(b, &p, NULL), FWX_E_POINTER);

    memcpy(p, "abcdefgh", 8);
    TU_EXPECT_HR(IFWXIOBuffer_SetDataSize(b, 5), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferSizes(b, &a, &d), FWX_S_OK);
    ck_assert_uint_eq(a, 8);
    ck_assert_uint_eq(d, 5);
    TU_EXPECT_HR(IFWXIOBuffer_SetDataSize(b, 8), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_SetDataSize(b, 9), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXIOBuffer_SetDataSize(b, UINT32_MAX), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferSizes(b, &a, &d), FWX_S_OK);
    ck_assert_uint_eq(d, 8); /* unchanged by the failures */
    TU_EXPECT_HR(IFWXIOBuffer_SetDataSize(b, 0), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferSizes(b, NULL, &d), FWX_E_POINTER);
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferSizes(b, &a, NULL), FWX_E_POINTER);
    TU_EXPECT_REF(b, 1);
    ck_assert_uint_eq(IFWXIOBuffer_Release(b), 0);
}
END_TEST

START_TEST(iobuffer_append)
{
    IFWXIOBuffer *b = new_buffer(8);
    TU_EXPECT_HR(IFWXIOBuffer_Append(b, "abc", 3), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_Append(b, "", 0), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_Append(b, "defgh", 5), FWX_S_OK); /* exactly full */
    TU_EXPECT_HR(IFWXIOBuffer_Append(b, "i", 1), FWX_E_BUFFERFULL);
    TU_EXPECT_HR(IFWXIOBuffer_Append(b, "", 0), FWX_S_OK);
    uint8_t *p;
    uint32_t d;
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferAndSize(b, &p, &d), FWX_S_OK);
    ck_assert_uint_eq(d, 8);
    ck_assert_mem_eq(p, "abcdefgh", 8);

    /* All or nothing: a part that would fit is not appended either. */
    TU_EXPECT_HR(IFWXIOBuffer_SetDataSize(b, 6), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_Append(b, "XYZ", 3), FWX_E_BUFFERFULL);
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferAndSize(b, &p, &d), FWX_S_OK);
    ck_assert_uint_eq(d, 6);
    ck_assert_mem_eq(p, "abcdefgh", 8);
    /* A size that would wrap 32 bits is full, not a small append. */
    TU_EXPECT_HR(IFWXIOBuffer_Append(b, "XYZ", UINT32_MAX), FWX_E_BUFFERFULL);
    TU_EXPECT_HR(IFWXIOBuffer_Append(b, NULL, 1), FWX_E_POINTER);
    /* Appending its own bytes. */
    TU_EXPECT_HR(IFWXIOBuffer_Append(b, p, 2), FWX_S_OK);
    ck_assert_mem_eq(p, "abcdefab", 8);
    TU_EXPECT_REF(b, 1);
    ck_assert_uint_eq(IFWXIOBuffer_Release(b), 0);
}
END_TEST

START_TEST(iobuffer_read_at)
{
    IFWXIOBuffer *b = new_buffer(16);
    TU_EXPECT_HR(IFWXIOBuffer_Append(b, "0123456789", 10), FWX_S_OK);
    char out[16];
    uint32_t got = 99;
    memset(out, 0, sizeof out);
    TU_EXPECT_HR(IFWXIOBuffer_ReadAt(b, 0, out, 4, &got), FWX_S_OK);
    ck_assert_uint_eq(got, 4);
    ck_assert_mem_eq(out, "0123", 4);
    TU_EXPECT_HR(IFWXIOBuffer_ReadAt(b, 7, out, 16, &got), FWX_S_OK); /* short at the end */
    ck_assert_uint_eq(got, 3);
    ck_assert_mem_eq(out, "789", 3);
    got = 99;
    TU_EXPECT_HR(IFWXIOBuffer_ReadAt(b, 10, out, 16, &got), FWX_S_OK); /* at the end */
    ck_assert_uint_eq(got, 0);
    got = 99;
    TU_EXPECT_HR(IFWXIOBuffer_ReadAt(b, 12, out, 16, &got), FWX_S_OK); /* past the data, inside the allocation */
    ck_assert_uint_eq(got, 0);
    got = 99;
    TU_EXPECT_HR(IFWXIOBuffer_ReadAt(b, UINT32_MAX, out, UINT32_MAX, &got), FWX_S_OK);
    ck_assert_uint_eq(got, 0);
    TU_EXPECT_HR(IFWXIOBuffer_ReadAt(b, 3, out, 0, &got), FWX_S_OK);
    ck_assert_uint_eq(got, 0);
    TU_EXPECT_HR(IFWXIOBuffer_ReadAt(b, 0, NULL, 4, &got), FWX_E_POINTER);
    TU_EXPECT_HR(IFWXIOBuffer_ReadAt(b, 0, out, 4, NULL), FWX_E_POINTER);
    TU_EXPECT_REF(b, 1);
    ck_assert_uint_eq(IFWXIOBuffer_Release(b), 0);
}
END_TEST

START_TEST(iobuffer_send_to_buffer)
{
    IFWXIOBuffer *src = new_buffer(8), *dst = new_buffer(10);
    TU_EXPECT_HR(IFWXIOBuffer_Append(src, "hello", 5), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_Append(dst, ">", 1), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_SendToBuffer(src, dst), FWX_S_OK);
    TU_EXPECT_REF(src, 1);
    TU_EXPECT_REF(dst, 1);
    uint8_t *p;
    uint32_t d;
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferAndSize(dst, &p, &d), FWX_S_OK);
    ck_assert_uint_eq(d, 6);
    ck_assert_mem_eq(p, ">hello", 6);
    /* 6 + 5 > 10: nothing copied. */
    TU_EXPECT_HR(IFWXIOBuffer_SendToBuffer(src, dst), FWX_E_BUFFERFULL);
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferAndSize(dst, &p, &d), FWX_S_OK);
    ck_assert_uint_eq(d, 6);
    /* The source is not consumed. */
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferAndSize(src, &p, &d), FWX_S_OK);
    ck_assert_uint_eq(d, 5);
    /* Into itself would need 10 bytes of 8. */
    TU_EXPECT_HR(IFWXIOBuffer_SendToBuffer(src, src), FWX_E_BUFFERFULL);
    TU_EXPECT_HR(IFWXIOBuffer_SetDataSize(src, 4), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_SendToBuffer(src, src), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferAndSize(src, &p, &d), FWX_S_OK);
    ck_assert_uint_eq(d, 8);
    ck_assert_mem_eq(p, "hellhell", 8);
    /* An empty source copies nothing and succeeds. */
    IFWXIOBuffer *empty = new_buffer(4);
    TU_EXPECT_HR(IFWXIOBuffer_SendToBuffer(empty, dst), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_SendToBuffer(src, NULL), FWX_E_POINTER);

    /* A filter's own buffer implementation is a valid target. */
    foreign_buf fb = { { &fbuf_vtbl }, 1, { 0 }, 0, 0 };
    TU_EXPECT_HR(IFWXIOBuffer_SendToBuffer(src, &fb.iface), FWX_S_OK);
    ck_assert_uint_eq(fb.n, 8);
    ck_assert_mem_eq(fb.data, "hellhell", 8);
    TU_EXPECT_HR(IFWXIOBuffer_SendToBuffer(src, &fb.iface), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_SendToBuffer(src, &fb.iface), FWX_E_BUFFERFULL);
    ck_assert_uint_eq(fb.n, 16);
    ck_assert_uint_eq(fb.ref, 1); /* borrowed: no reference kept */
    ck_assert(!fwx__iobuffer_is_ours(&fb.iface));

    TU_EXPECT_REF(src, 1);
    TU_EXPECT_REF(dst, 1);
    ck_assert_uint_eq(IFWXIOBuffer_Release(empty), 0);
    ck_assert_uint_eq(IFWXIOBuffer_Release(src), 0);
    ck_assert_uint_eq(IFWXIOBuffer_Release(dst), 0);
}
END_TEST

START_TEST(iobuffer_readonly_and_raw)
{
    IFWXIOBuffer *b = new_buffer(16);
    ck_assert(fwx__iobuffer_is_ours(b));
    ck_assert(!fwx__iobuffer_is_ours(NULL));
    uint32_t d = 99, a = 99;
    uint8_t *raw = fwx__iobuffer_raw(b, &d, &a);
    ck_assert_ptr_nonnull(raw);
    ck_assert_uint_eq(d, 0);
    ck_assert_uint_eq(a, 16);
    ck_assert_ptr_eq(fwx__iobuffer_raw(b, NULL, NULL), raw);

    /* The core fills a receive buffer through raw, then hands it over read-only. */
    memcpy(raw, "datagram", 8);
    TU_EXPECT_HR(IFWXIOBuffer_SetDataSize(b, 8), FWX_S_OK);
    fwx__iobuffer_set_readonly(b, true);
    TU_EXPECT_HR(IFWXIOBuffer_SetDataSize(b, 2), FWX_E_NOT_SUPPORTED);
    TU_EXPECT_HR(IFWXIOBuffer_SetDataSize(b, 99), FWX_E_NOT_SUPPORTED);
    TU_EXPECT_HR(IFWXIOBuffer_Append(b, "x", 1), FWX_E_NOT_SUPPORTED);
    uint8_t *p;
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferAndSize(b, &p, &d), FWX_S_OK);
    ck_assert_ptr_eq(p, raw);
    ck_assert_uint_eq(d, 8);
    char out[8];
    uint32_t got;
    TU_EXPECT_HR(IFWXIOBuffer_ReadAt(b, 4, out, 8, &got), FWX_S_OK);
    ck_assert_uint_eq(got, 4);
    ck_assert_mem_eq(out, "gram", 4);
    /* Read-only may be a source but not a target. */
    IFWXIOBuffer *other = new_buffer(16);
    TU_EXPECT_HR(IFWXIOBuffer_SendToBuffer(b, other), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_SendToBuffer(other, b), FWX_E_NOT_SUPPORTED);
    TU_EXPECT_HR(IFWXIOBuffer_GetBufferSizes(b, &a, &d), FWX_S_OK);
    ck_assert_uint_eq(d, 8);
    fwx__iobuffer_set_readonly(b, false);
    TU_EXPECT_HR(IFWXIOBuffer_SetDataSize(b, 2), FWX_S_OK);
    TU_EXPECT_HR(IFWXIOBuffer_Append(b, "x", 1), FWX_S_OK);
    ck_assert_ptr_eq(fwx__iobuffer_raw(b, &d, NULL), raw);
    ck_assert_uint_eq(d, 3);

    /* Not ours: no raw access, read-only is a no-op. */
    foreign_buf fb = { { &fbuf_vtbl }, 1, { 0 }, 0, 0 };
    ck_assert_ptr_null(fwx__iobuffer_raw(&fb.iface, &d, &a));
    fwx__iobuffer_set_readonly(&fb.iface, true);
    ck_assert_uint_eq(fb.ref, 1);
    TU_EXPECT_REF(b, 1);
    ck_assert_uint_eq(IFWXIOBuffer_Release(other), 0);
    ck_assert_uint_eq(IFWXIOBuffer_Release(b), 0);
}
END_TEST

/* ---- IFWXIpFilter ----------------------------------------------------------------------- */

START_TEST(ipfilter_iunknown)
{
    TU_EXPECT_HR(fwx__ipfilter_new(NULL), FWX_E_POINTER);
    IFWXIpFilter *f = new_filter();
    ck_assert(fwx__ipfilter_is_ours(f));
    ck_assert(!fwx__ipfilter_is_ours(NULL));
    void *pv = NULL;
    TU_EXPECT_HR(IFWXIpFilter_QueryInterface(f, &IID_IUnknown, &pv), FWX_S_OK);
    ck_assert_ptr_eq(pv, f);
    TU_EXPECT_REF(f, 2);
    ck_assert_uint_eq(IUnknown_Release((IUnknown *)pv), 1);
    TU_EXPECT_HR(IFWXIpFilter_QueryInterface(f, &IID_IFWXIpFilter, &pv), FWX_S_OK);
    ck_assert_ptr_eq(pv, f);
    TU_EXPECT_REF(f, 2);
    ck_assert_uint_eq(IFWXIpFilter_Release((IFWXIpFilter *)pv), 1);
    pv = (void *)(uintptr_t)1;
    TU_EXPECT_HR(IFWXIpFilter_QueryInterface(f, &IID_IFWXIOBuffer, &pv), FWX_E_NOINTERFACE);
    ck_assert_ptr_null(pv);
    EXPECT_QI_BAD_ARGS(IFWXIpFilter_QueryInterface, f);
    TU_EXPECT_REF(f, 1);
    ck_assert_uint_eq(IFWXIpFilter_AddRef(f), 2);
    ck_assert_uint_eq(IFWXIpFilter_Release(f), 1);
    ck_assert_uint_eq(IFWXIpFilter_Release(f), 0);
}
END_TEST

START_TEST(ipfilter_empty)
{
    IFWXIpFilter *f = new_filter();
    EXPECT_OUT(f, "10.0.0.1", "0.0.0.0", "::", "2001:db8::1");
    IFWXIpFilter *g = new_filter();
    TU_EXPECT_HR(IFWXIpFilter_Compare(f, g), FWX_S_OK);
    /* Exclusions alone still leave it empty. */
    RANGES(g, "-10.0.0.1 10.0.0.5");
    TU_EXPECT_HR(IFWXIpFilter_Compare(f, g), FWX_S_OK);
    RELEASE_ALL(g, f);
}
END_TEST

START_TEST(ipfilter_include_range_v4)
{
    IFWXIpFilter *f = new_filter();
    /* Ports are ignored. */
    RANGES(f, "+10.0.0.1:21 10.0.0.9:0");
    TU_EXPECT_HR(has(f, "10.0.0.0"), FWX_S_FALSE);
    EXPECT_IN(f, "10.0.0.1", "10.0.0.5:4000", "10.0.0.9");
    EXPECT_OUT(f, "10.0.0.10", "11.0.0.5");
    /* A single address, and an IPv4 range does not include IPv6 addresses. */
    RANGES(f, "+192.0.2.7");
    TU_EXPECT_HR(has(f, "192.0.2.7"), FWX_S_OK);
    EXPECT_OUT(f, "192.0.2.6", "192.0.2.8");
    TU_EXPECT_HR(has(f, "::a00:5"), FWX_S_FALSE); /* ::10.0.0.5 (v4-compatible) is IPv6 */
    /* The extremes. */
    RANGES(f, "+0.0.0.0", "+255.255.255.255");
    TU_EXPECT_HR(has(f, "0.0.0.0"), FWX_S_OK);
    TU_EXPECT_HR(has(f, "0.0.0.1"), FWX_S_FALSE);
    TU_EXPECT_HR(has(f, "255.255.255.255"), FWX_S_OK);
    TU_EXPECT_HR(has(f, "255.255.255.254"), FWX_S_FALSE);
    TU_EXPECT_REF(f, 1);
    ck_assert_uint_eq(IFWXIpFilter_Release(f), 0);
}
END_TEST

START_TEST(ipfilter_range_invalid)
{
    IFWXIpFilter *f = new_filter();
    struct sockaddr_storage a = tu_addr("10.0.0.1"), b = tu_addr("10.0.0.9"), c = tu_addr("2001:db8::1");
    /* First > Last. */
    TU_EXPECT_HR(inc(f, "10.0.0.9", "10.0.0.1"), FWX_E_INVALIDARG);
    TU_EXPECT_HR(exc(f, "10.0.0.9", "10.0.0.1"), FWX_E_INVALIDARG);
    TU_EXPECT_HR(inc(f, "2001:db8::2", "2001:db8::1"), FWX_E_INVALIDARG);
    /* Families differ. */
    TU_EXPECT_HR(IFWXIpFilter_IncludeRange(f, TU_SA(a), tu_len(&a), TU_SA(c), tu_len(&c)), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXIpFilter_ExcludeRange(f, TU_SA(a), tu_len(&a), TU_SA(c), tu_len(&c)), FWX_E_INVALIDARG);
    TU_EXPECT_HR(inc(f, "::ffff:10.0.0.1", "2001:db8::1"), FWX_E_INVALIDARG); /* mapped is IPv4 */
    /* Bad lengths. */
    TU_EXPECT_HR(IFWXIpFilter_IncludeRange(f, TU_SA(a), 0, TU_SA(b), tu_len(&b)), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXIpFilter_IncludeRange(f, TU_SA(a), tu_len(&a), TU_SA(b), tu_len(&b) - 1), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXIpFilter_IncludeRange(f, TU_SA(c), sizeof(struct sockaddr_in), TU_SA(c), tu_len(&c)),
                 FWX_E_INVALIDARG);
    /* Not an IP family. */
    struct sockaddr_storage u;
    memset(&u, 0, sizeof u);
    u.ss_family = AF_UNIX;
    TU_EXPECT_HR(IFWXIpFilter_IncludeRange(f, TU_SA(u), sizeof u, TU_SA(u), sizeof u), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXIpFilter_IsIncluded(f, TU_SA(u), sizeof u), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXIpFilter_IsIncluded(f, TU_SA(a), 3), FWX_E_INVALIDARG);
    /* NULL pointers. */
    TU_EXPECT_HR(IFWXIpFilter_IncludeRange(f, NULL, 0, TU_SA(b), tu_len(&b)), FWX_E_POINTER);
    TU_EXPECT_HR(IFWXIpFilter_ExcludeRange(f, TU_SA(a), tu_len(&a), NULL, 0), FWX_E_POINTER);
    TU_EXPECT_HR(IFWXIpFilter_IsIncluded(f, NULL, 16), FWX_E_POINTER);
    /* Nothing of that changed the filter. */
    IFWXIpFilter *g = new_filter();
    TU_EXPECT_HR(IFWXIpFilter_Compare(f, g), FWX_S_OK);
    TU_EXPECT_HR(has(f, "10.0.0.5"), FWX_S_FALSE);
    RELEASE_ALL(g, f);
}
END_TEST

START_TEST(ipfilter_exclude_range)
{
    IFWXIpFilter *f = new_filter();
    RANGES(f, "+10.0.0.0 10.0.0.255", "-10.0.0.10 10.0.0.19");
    TU_EXPECT_HR(has(f, "10.0.0.9"), FWX_S_OK);
    EXPECT_OUT(f, "10.0.0.10", "10.0.0.19");
    TU_EXPECT_HR(has(f, "10.0.0.20"), FWX_S_OK);
    /* An exclusion wins whatever the order: including again does not bring it back. */
    RANGES(f, "+10.0.0.15");
    TU_EXPECT_HR(has(f, "10.0.0.15"), FWX_S_FALSE);
    /* Excluding what is not included is fine and changes nothing visible. */
    RANGES(f, "-172.16.0.0 172.16.255.255");
    TU_EXPECT_HR(has(f, "172.16.0.1"), FWX_S_FALSE);
    /* Exclude first, include later: still excluded. */
    IFWXIpFilter *g = new_filter();
    RANGES(g, "-10.0.0.10 10.0.0.19", "+10.0.0.0 10.0.0.255");
    TU_EXPECT_HR(has(g, "10.0.0.12"), FWX_S_FALSE);
    TU_EXPECT_HR(IFWXIpFilter_Compare(f, g), FWX_S_OK);
    /* Exclude the extremes of the whole space. */
    IFWXIpFilter *h = new_filter();
    RANGES(h, "+0.0.0.0 255.255.255.255", "-0.0.0.0", "-255.255.255.255");
    TU_EXPECT_HR(has(h, "0.0.0.0"), FWX_S_FALSE);
    EXPECT_IN(h, "0.0.0.1", "255.255.255.254");
    TU_EXPECT_HR(has(h, "255.255.255.255"), FWX_S_FALSE);
    RANGES(h, "+:: ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    TU_EXPECT_HR(exc(h, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
                 FWX_S_OK);
    RANGES(h, "-::");
    TU_EXPECT_HR(has(h, "::"), FWX_S_FALSE);
    EXPECT_IN(h, "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
    TU_EXPECT_HR(has(h, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), FWX_S_FALSE);
    TU_EXPECT_HR(has(h, "0.0.0.0"), FWX_S_FALSE); /* still the IPv4 exclusion */
    RELEASE_ALL(h, g, f);
}
END_TEST

START_TEST(ipfilter_ipv6)
{
    IFWXIpFilter *f = new_filter();
    RANGES(f, "+[2001:db8::1]:80 2001:db8::ff");
    TU_EXPECT_HR(has(f, "2001:db8::"), FWX_S_FALSE);
    EXPECT_IN(f, "2001:db8::1", "[2001:db8::80]:21", "2001:db8::ff");
    EXPECT_OUT(f, "2001:db8::100", "2001:db9::1", "0.0.0.1");
    /* A range that crosses the 64-bit halves. */
    RANGES(f, "+2001:db8:0:1:ffff:ffff:ffff:fff0 2001:db8:0:2::f");
    EXPECT_IN(f, "2001:db8:0:1:ffff:ffff:ffff:ffff", "2001:db8:0:2::");
    EXPECT_OUT(f, "2001:db8:0:2::10", "2001:db8:0:1:ffff:ffff:ffff:ffef");
    RANGES(f, "-2001:db8:0:1:ffff:ffff:ffff:ffff 2001:db8:0:2::");
    TU_EXPECT_HR(has(f, "2001:db8:0:1:ffff:ffff:ffff:fffe"), FWX_S_OK);
    EXPECT_OUT(f, "2001:db8:0:1:ffff:ffff:ffff:ffff", "2001:db8:0:2::");
    TU_EXPECT_HR(has(f, "2001:db8:0:2::1"), FWX_S_OK);
    /* Scope ids, like ports, are not part of the address set. */
    struct sockaddr_storage ll = tu_addr("fe80::1");
    TU_EXPECT_HR(IFWXIpFilter_IncludeRange(f, TU_SA(ll), tu_len(&ll), TU_SA(ll), tu_len(&ll)), FWX_S_OK);
    ((struct sockaddr_in6 *)&ll)->sin6_scope_id = 3;
    TU_EXPECT_HR(IFWXIpFilter_IsIncluded(f, TU_SA(ll), tu_len(&ll)), FWX_S_OK);
    TU_EXPECT_REF(f, 1);
    ck_assert_uint_eq(IFWXIpFilter_Release(f), 0);
}
END_TEST

START_TEST(ipfilter_v4_mapped)
{
    IFWXIpFilter *f = new_filter();
    /* A v4-mapped range is the IPv4 range. */
    RANGES(f, "+::ffff:10.0.0.1 ::ffff:10.0.0.9");
    EXPECT_IN(f, "10.0.0.5", "::ffff:10.0.0.5", "[::ffff:10.0.0.9]:21");
    EXPECT_OUT(f, "::ffff:10.0.0.10", "::a00:5");
    /* Mixed forms of one family are one family. */
    RANGES(f, "+::ffff:192.0.2.1 192.0.2.3");
    EXPECT_IN(f, "192.0.2.2", "::ffff:192.0.2.3");
    /* Excluding the mapped form excludes the IPv4 host, and the other way round. */
    RANGES(f, "-::ffff:10.0.0.5");
    TU_EXPECT_HR(has(f, "10.0.0.5"), FWX_S_FALSE);
    RANGES(f, "-10.0.0.6");
    TU_EXPECT_HR(has(f, "::ffff:10.0.0.6"), FWX_S_FALSE);

    IFWXIpFilter *g = new_filter();
    RANGES(g, "+10.0.0.1 10.0.0.4", "+10.0.0.7 10.0.0.9", "+192.0.2.1 192.0.2.3");
    TU_EXPECT_HR(IFWXIpFilter_Compare(f, g), FWX_S_OK);
    TU_EXPECT_HR(IFWXIpFilter_Compare(g, f), FWX_S_OK);

    /* An IPv6 range that spans the mapped block covers those IPv4 hosts, and only them. */
    IFWXIpFilter *h = new_filter();
    RANGES(h, "+::fffe:ffff:ffff ::1:0:0:1");
    EXPECT_IN(h, "0.0.0.0", "203.0.113.9", "255.255.255.255", "::fffe:ffff:ffff");
    TU_EXPECT_HR(has(h, "::fffe:ffff:fffe"), FWX_S_FALSE);
    EXPECT_IN(h, "::1:0:0:0", "::1:0:0:1");
    TU_EXPECT_HR(has(h, "::1:0:0:2"), FWX_S_FALSE);
    IFWXIpFilter *k = new_filter();
    RANGES(k, "+0.0.0.0 255.255.255.255", "+::fffe:ffff:ffff", "+::1:0:0:0 ::1:0:0:1");
    TU_EXPECT_HR(IFWXIpFilter_Compare(h, k), FWX_S_OK);
    /* Ranges inside the block only. */
    IFWXIpFilter *m = new_filter();
    RANGES(m, "+::ffff:0.0.0.0 ::ffff:255.255.255.255", "+::fffe:ffff:ffff", "+::1:0:0:0 ::1:0:0:1");
    TU_EXPECT_HR(IFWXIpFilter_Compare(m, k), FWX_S_OK);
    RANGES(m, "-::1:0:0:0");
    TU_EXPECT_HR(IFWXIpFilter_Compare(m, k), FWX_S_FALSE);

    RELEASE_ALL(m, k, h, g, f);
}
END_TEST

START_TEST(ipfilter_merge_and_compare)
{
    IFWXIpFilter *a = new_filter(), *b = new_filter();
    /* Adjacent and overlapping ranges merge; the same set compares equal however it was built. */
    RANGES(a, "+10.0.0.1 10.0.0.5", "+10.0.0.6 10.0.0.9", "+10.0.0.3 10.0.0.4");
    RANGES(b, "+10.0.0.1 10.0.0.9");
    TU_EXPECT_HR(IFWXIpFilter_Compare(a, b), FWX_S_OK);
    TU_EXPECT_HR(IFWXIpFilter_Compare(a, a), FWX_S_OK);
    RANGES(b, "+10.0.0.11");
    TU_EXPECT_HR(IFWXIpFilter_Compare(a, b), FWX_S_FALSE);
    TU_EXPECT_HR(IFWXIpFilter_Compare(b, a), FWX_S_FALSE);
    RANGES(a, "+10.0.0.11");
    TU_EXPECT_HR(IFWXIpFilter_Compare(a, b), FWX_S_OK);
    /* One range that swallows several. */
    RANGES(a, "+10.0.0.0 10.0.0.20");
    RANGES(b, "+10.0.0.10", "+10.0.0.12 10.0.0.20");
    TU_EXPECT_HR(IFWXIpFilter_Compare(a, b), FWX_S_FALSE);
    RANGES(b, "+10.0.0.0");
    TU_EXPECT_HR(IFWXIpFilter_Compare(a, b), FWX_S_OK);
    /* Compare is about effective sets: include-minus-exclude equals the pieces included. */
    RANGES(a, "-10.0.0.5");
    TU_EXPECT_HR(IFWXIpFilter_Compare(a, b), FWX_S_FALSE);
    IFWXIpFilter *c = new_filter();
    RANGES(c, "+10.0.0.0 10.0.0.4", "+10.0.0.6 10.0.0.20");
    TU_EXPECT_HR(IFWXIpFilter_Compare(a, c), FWX_S_OK);
    /* Families count separately. */
    RANGES(c, "+2001:db8::5");
    TU_EXPECT_HR(IFWXIpFilter_Compare(a, c), FWX_S_FALSE);
    /* Bad arguments. */
    foreign_ipf fo = { { &fipf_vtbl }, 1 };
    TU_EXPECT_HR(IFWXIpFilter_Compare(a, &fo.iface), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXIpFilter_Compare(a, NULL), FWX_E_POINTER);
    ck_assert_uint_eq(fo.ref, 1);
    TU_EXPECT_REF(a, 1);
    TU_EXPECT_REF(b, 1);
    TU_EXPECT_REF(c, 1);
    RELEASE_ALL(c, b, a);
}
END_TEST

START_TEST(ipfilter_include_filter)
{
    IFWXIpFilter *f = new_filter(), *o = new_filter();
    RANGES(o, "+10.0.0.0 10.0.0.255", "-10.0.0.128 10.0.0.255", "+2001:db8:: 2001:db8::ffff");
    RANGES(f, "+192.0.2.1");
    TU_EXPECT_HR(IFWXIpFilter_IncludeFilter(f, o), FWX_S_OK);
    TU_EXPECT_REF(o, 1); /* borrowed and copied, not kept */
    TU_EXPECT_REF(f, 1);
    TU_EXPECT_HR(has(f, "10.0.0.1"), FWX_S_OK);
    TU_EXPECT_HR(has(f, "10.0.0.128"), FWX_S_FALSE); /* the other's exclusion travels */
    EXPECT_IN(f, "2001:db8::42", "192.0.2.1");
    /* Copied now: later changes to the other do not show. */
    RANGES(o, "+172.16.0.1");
    TU_EXPECT_HR(has(f, "172.16.0.1"), FWX_S_FALSE);
    /* ... and the other is unchanged by the copy. */
    TU_EXPECT_HR(has(o, "192.0.2.1"), FWX_S_FALSE);
    /* Including itself changes nothing. */
    IFWXIpFilter *snap;
    TU_EXPECT_HR(IFWXIpFilter_Clone(f, &snap), FWX_S_OK);
    TU_EXPECT_HR(IFWXIpFilter_IncludeFilter(f, f), FWX_S_OK);
    TU_EXPECT_HR(IFWXIpFilter_Compare(f, snap), FWX_S_OK);
    TU_EXPECT_REF(f, 1);
    /* A filter's own implementation cannot be read. */
    foreign_ipf fo = { { &fipf_vtbl }, 1 };
    TU_EXPECT_HR(IFWXIpFilter_IncludeFilter(f, &fo.iface), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXIpFilter_IncludeFilter(f, NULL), FWX_E_POINTER);
    ck_assert_uint_eq(fo.ref, 1);
    TU_EXPECT_HR(IFWXIpFilter_Compare(f, snap), FWX_S_OK);
    RELEASE_ALL(snap, o, f);
}
END_TEST

START_TEST(ipfilter_exclude_filter)
{
    IFWXIpFilter *f = new_filter(), *o = new_filter();
    RANGES(f, "+10.0.0.0 10.0.0.255", "+2001:db8:: 2001:db8::ff");
    RANGES(o, "+10.0.0.0 10.0.0.15", "-10.0.0.8", "+::ffff:10.0.0.200", "+2001:db8::10 2001:db8::1f");
    TU_EXPECT_HR(IFWXIpFilter_ExcludeFilter(f, o), FWX_S_OK);
    TU_EXPECT_REF(o, 1);
    TU_EXPECT_REF(f, 1);
    TU_EXPECT_HR(has(f, "10.0.0.0"), FWX_S_FALSE);
    TU_EXPECT_HR(has(f, "10.0.0.8"), FWX_S_OK); /* the other did not include it */
    TU_EXPECT_HR(has(f, "10.0.0.15"), FWX_S_FALSE);
    TU_EXPECT_HR(has(f, "10.0.0.16"), FWX_S_OK);
    TU_EXPECT_HR(has(f, "10.0.0.200"), FWX_S_FALSE);
    TU_EXPECT_HR(has(f, "2001:db8::f"), FWX_S_OK);
    TU_EXPECT_HR(has(f, "2001:db8::10"), FWX_S_FALSE);
    TU_EXPECT_HR(has(f, "2001:db8::20"), FWX_S_OK);
    /* Excluding itself empties it. */
    TU_EXPECT_HR(IFWXIpFilter_ExcludeFilter(f, f), FWX_S_OK);
    IFWXIpFilter *empty = new_filter();
    TU_EXPECT_HR(IFWXIpFilter_Compare(f, empty), FWX_S_OK);
    TU_EXPECT_HR(has(f, "10.0.0.16"), FWX_S_FALSE);
    foreign_ipf fo = { { &fipf_vtbl }, 1 };
    TU_EXPECT_HR(IFWXIpFilter_ExcludeFilter(f, &fo.iface), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXIpFilter_ExcludeFilter(f, NULL), FWX_E_POINTER);
    ck_assert_uint_eq(fo.ref, 1);
    RELEASE_ALL(empty, o, f);
}
END_TEST

START_TEST(ipfilter_clone)
{
    IFWXIpFilter *f = new_filter();
    RANGES(f, "+10.0.0.0 10.0.0.255", "-10.0.0.7", "+2001:db8::1 2001:db8::9");
    IFWXIpFilter *c = (IFWXIpFilter *)(uintptr_t)1;
    TU_EXPECT_HR(IFWXIpFilter_Clone(f, &c), FWX_S_OK);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_ne(c, f);
    ck_assert(fwx__ipfilter_is_ours(c));
    TU_EXPECT_REF(c, 1);
    TU_EXPECT_REF(f, 1);
    TU_EXPECT_HR(IFWXIpFilter_Compare(f, c), FWX_S_OK);
    TU_EXPECT_HR(has(c, "10.0.0.7"), FWX_S_FALSE);
    EXPECT_IN(c, "10.0.0.8", "2001:db8::5");
    /* The clone keeps the exclusions as exclusions: including again does not bring them back. */
    RANGES(c, "+10.0.0.7");
    TU_EXPECT_HR(has(c, "10.0.0.7"), FWX_S_FALSE);
    /* Independent copies. */
    RANGES(c, "-10.0.0.8");
    TU_EXPECT_HR(has(f, "10.0.0.8"), FWX_S_OK);
    TU_EXPECT_HR(IFWXIpFilter_Compare(f, c), FWX_S_FALSE);
    TU_EXPECT_HR(IFWXIpFilter_Clone(f, NULL), FWX_E_POINTER);
    ck_assert_uint_eq(IFWXIpFilter_Release(f), 0);
    /* The clone outlives its source. */
    TU_EXPECT_HR(has(c, "10.0.0.9"), FWX_S_OK);
    ck_assert_uint_eq(IFWXIpFilter_Release(c), 0);
    /* Cloning an empty filter. */
    IFWXIpFilter *e = new_filter(), *ec = NULL;
    TU_EXPECT_HR(IFWXIpFilter_Clone(e, &ec), FWX_S_OK);
    TU_EXPECT_HR(IFWXIpFilter_Compare(e, ec), FWX_S_OK);
    RELEASE_ALL(ec, e);
}
END_TEST

/* Random ranges over a small IPv4 window checked against a bitmap: catches merge and
   subtraction edge cases the hand-written cases miss. */
#define WIN_BASE 0x0A000000u /* 10.0.0.0 */
#define WIN_SIZE 512u

static uint32_t rng_state = 0x2545F491u;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void filter_range(IFWXIpFilter *f, bool include, uint32_t lo, uint32_t hi)
{
    struct sockaddr_storage a = v4(WIN_BASE + lo), b = v4(WIN_BASE + hi);
    if (include)
        TU_EXPECT_HR(IFWXIpFilter_IncludeRange(f, TU_SA(a), tu_len(&a), TU_SA(b), tu_len(&b)), FWX_S_OK);
    else
        TU_EXPECT_HR(IFWXIpFilter_ExcludeRange(f, TU_SA(a), tu_len(&a), TU_SA(b), tu_len(&b)), FWX_S_OK);
}

START_TEST(ipfilter_random_against_bitmap)
{
    for (unsigned round = 0; round < 40; round++) {
        bool in[WIN_SIZE] = { false }, ex[WIN_SIZE] = { false };
        IFWXIpFilter *f = new_filter(), *g = new_filter();
        unsigned ops = 1 + rng() % 30;
        for (unsigned k = 0; k < ops; k++) {
            uint32_t lo = rng() % WIN_SIZE, len = 1 + rng() % 40;
            uint32_t hi = lo + len - 1 < WIN_SIZE ? lo + len - 1 : WIN_SIZE - 1;
            bool include = rng() % 3 != 0;
            filter_range(f, include, lo, hi);
            for (uint32_t x = lo; x <= hi; x++)
                (include ? in : ex)[x] = true;
        }
        /* g: the effective set built from single addresses in reverse order. */
        for (uint32_t x = WIN_SIZE; x-- > 0;) {
            if (in[x] && !ex[x])
                filter_range(g, true, x, x);
        }
        for (uint32_t x = 0; x < WIN_SIZE; x++) {
            struct sockaddr_storage a = v4(WIN_BASE + x);
            fwx_result want = in[x] && !ex[x] ? FWX_S_OK : FWX_S_FALSE;
            TU_EXPECT_HR(IFWXIpFilter_IsIncluded(f, TU_SA(a), tu_len(&a)), want);
            TU_EXPECT_HR(IFWXIpFilter_IsIncluded(g, TU_SA(a), tu_len(&a)), want);
        }
        TU_EXPECT_HR(IFWXIpFilter_Compare(f, g), FWX_S_OK);
        TU_EXPECT_HR(IFWXIpFilter_Compare(g, f), FWX_S_OK);
        /* Through IncludeFilter the effective set travels intact. */
        IFWXIpFilter *h = new_filter();
        TU_EXPECT_HR(IFWXIpFilter_IncludeFilter(h, f), FWX_S_OK);
        TU_EXPECT_HR(IFWXIpFilter_Compare(h, g), FWX_S_OK);
        RELEASE_ALL(h, g, f);
    }
}
END_TEST

/* ---- suite ------------------------------------------------------------------------------ */

int main(void)
{
    const tu_case cases[] = {
        {"result_every_code", result_every_code},
        {"result_unknown_code", result_unknown_code},
        {"result_from_errno", result_from_errno},
        {"result_documented_values", result_documented_values},
        {"guid_format", guid_format},
        {"guid_round_trip", guid_round_trip},
        {"guid_reject_malformed", guid_reject_malformed},
        {"iobuffer_new", iobuffer_new},
        {"iobuffer_iunknown", iobuffer_iunknown},
        {"iobuffer_get_set_size", iobuffer_get_set_size},
        {"iobuffer_append", iobuffer_append},
        {"iobuffer_read_at", iobuffer_read_at},
        {"iobuffer_send_to_buffer", iobuffer_send_to_buffer},
        {"iobuffer_readonly_and_raw", iobuffer_readonly_and_raw},
        {"ipfilter_iunknown", ipfilter_iunknown},
        {"ipfilter_empty", ipfilter_empty},
        {"ipfilter_include_range_v4", ipfilter_include_range_v4},
        {"ipfilter_range_invalid", ipfilter_range_invalid},
        {"ipfilter_exclude_range", ipfilter_exclude_range},
        {"ipfilter_ipv6", ipfilter_ipv6},
        {"ipfilter_v4_mapped", ipfilter_v4_mapped},
        {"ipfilter_merge_and_compare", ipfilter_merge_and_compare},
        {"ipfilter_include_filter", ipfilter_include_filter},
        {"ipfilter_exclude_filter", ipfilter_exclude_filter},
        {"ipfilter_clone", ipfilter_clone},
        {"ipfilter_random_against_bitmap", ipfilter_random_against_bitmap},
    };
    return tu_run_suite(TU_SUITE("objects", cases, 0));
}
