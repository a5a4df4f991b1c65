/*
 * fwx tests - the upper-casing UDP data filter (udp_filter.h).
 * SPDX-License-Identifier: MIT
 */
#include "udp_filter.h"

#include <check.h>
#include <ctype.h>
#include <stddef.h>
#include <string.h>

#define UDF_OF(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static udf *udf_impl(IFWXDataFilter *i) { return UDF_OF(i, udf, iface); }

static fwx_result udf_qi(IFWXDataFilter *This, const fwx_guid *riid, void **ppv)
{
    *ppv = NULL;
    if (!fwx_guid_equal(riid, &IID_IUnknown) && !fwx_guid_equal(riid, &IID_IFWXDataFilter))
        return FWX_E_NOINTERFACE;
    This->lpVtbl->AddRef(This);
    *ppv = This;
    return FWX_S_OK;
}
static uint32_t udf_addref(IFWXDataFilter *This) { return atomic_fetch_add(&udf_impl(This)->refs, 1) + 1; }
static uint32_t udf_release(IFWXDataFilter *This)
{
    uint32_t before = atomic_fetch_sub(&udf_impl(This)->refs, 1);
    ck_assert_uint_gt(before, 1); /* the test's own reference outlives every one the core takes */
    return before - 1;
}

static void udf_recv(udf *f, int d)
{
    if (f->s[d] == NULL || FWX_FAILED(IFWXSocket_Recv(f->s[d], NULL, &f->dirs[d].iface, 0)))
        atomic_fetch_add(&f->failures, 1);
}

static fwx_result udf_complete(IFWXIOCompletion *This, int32_t ok, int32_t err, IFWXIOBuffer *buf, uintptr_t ud,
                               const struct sockaddr *a, uint32_t al)
{
    (void)err;
    (void)ud;
    udf_dir *dir = UDF_OF(This, udf_dir, iface);
    udf *f = dir->f;
    int d = dir->d;
    if (!ok || f->s[d] == NULL)
        return FWX_S_OK; /* cancelled at the flow's end */
    uint8_t *p;
    uint32_t n, alloc = 0, data = 0;
    IFWXIOBuffer_GetBufferAndSize(buf, &p, &n);
    IFWXIOBuffer_GetBufferSizes(buf, &alloc, &data);
    ck_assert_uint_eq(data, n);    /* the completion's buffer holds what was read, */
    ck_assert_uint_le(data, alloc); /* within what the core allocated */
    atomic_store(&f->buf_alloc, alloc);
    if (n == 0)
        return FWX_S_OK; /* EOF: nothing more on this side */
    if (a != NULL && al > 0)
        f->had_addr = 1;
    atomic_fetch_add(&f->datagrams, 1);
    if (n > atomic_load(&f->max_len))
        atomic_store(&f->max_len, n);
    IFWXIOBuffer *out = NULL;
    uint8_t *q;
    uint32_t m;
    ck_assert_int_eq(IFWXFirewall_CreateBuffer(f->fw, n, &out), FWX_S_OK);
    ck_assert_int_eq(IFWXIOBuffer_SetDataSize(out, n), FWX_S_OK);
    IFWXIOBuffer_GetBufferAndSize(out, &q, &m);
    ck_assert_uint_eq(m, n);
    for (uint32_t i = 0; i < n; i++)
        q[i] = (uint8_t)toupper(p[i]);
    if (FWX_FAILED(IFWXSocket_Send(f->s[1 - d], out, NULL, 0)))
        atomic_fetch_add(&f->failures, 1);
    IFWXIOBuffer_Release(out);
    udf_recv(f, d);
    return FWX_S_OK;
}

static fwx_result udf_cqi(IFWXIOCompletion *This, const fwx_guid *riid, void **ppv)
{
    *ppv = NULL;
    if (!fwx_guid_equal(riid, &IID_IUnknown) && !fwx_guid_equal(riid, &IID_IFWXIOCompletion))
        return FWX_E_NOINTERFACE;
    This->lpVtbl->AddRef(This);
    *ppv = This;
    return FWX_S_OK;
}
static uint32_t udf_caddref(IFWXIOCompletion *This) { return udf_addref(&UDF_OF(This, udf_dir, iface)->f->iface); }
static uint32_t udf_crelease(IFWXIOCompletion *This) { return udf_release(&UDF_OF(This, udf_dir, iface)->f->iface); }
static const IFWXIOCompletionVtbl udf_cvtbl = {udf_cqi, udf_caddref, udf_crelease, udf_complete};

static fwx_result udf_setsockets(IFWXDataFilter *This, IFWXSocket *in, IFWXSocket *ex, IFWXConnection *c, IUnknown *ctx)
{
    (void)c;
    (void)ctx;
    udf *f = udf_impl(This);
    atomic_fetch_add(&f->setsockets, 1);
    ck_assert_ptr_null(f->s[0]); /* once per attachment: a second SetSockets would leak the first */
    ck_assert_ptr_null(f->s[1]);
    ck_assert_ptr_nonnull(in);
    ck_assert_ptr_nonnull(ex);
    f->s[0] = in;
    f->s[1] = ex;
    IFWXSocket_AddRef(in);
    IFWXSocket_AddRef(ex);
    udf_recv(f, 0);
    udf_recv(f, 1);
    return FWX_S_OK;
}

static fwx_result udf_detach(IFWXDataFilter *This)
{
    udf *f = udf_impl(This);
    atomic_fetch_add(&f->detached, 1);
    for (int i = 0; i < 2; i++)
        if (f->s[i] != NULL) {
            IFWXSocket_Close(f->s[i]); /* the socket contract: a filter closes what it got */
            IFWXSocket_Release(f->s[i]);
            f->s[i] = NULL;
        }
    return FWX_S_OK;
}

static const IFWXDataFilterVtbl udf_vtbl = {udf_qi, udf_addref, udf_release, udf_setsockets, udf_detach};

void udf_init(udf *f)
{
    memset(f, 0, sizeof *f);
    f->iface.lpVtbl = &udf_vtbl;
    atomic_init(&f->refs, 1);
    for (int d = 0; d < 2; d++) {
        f->dirs[d].iface.lpVtbl = &udf_cvtbl;
        f->dirs[d].f = f;
        f->dirs[d].d = d;
    }
}

