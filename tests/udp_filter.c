/*
 * fwx tests - the upper-casing UDP data filter (udp_filter.h).
 * SPDX-License-Identifier: MIT
 */
#include "udp_filter.h"
#include "testutil.h"

#include <check.h>
#include <ctype.h>
#include <stddef.h>
#include <string.h>

/* The test's own reference outlives every one the core takes: the count never reaches 0 here. */
static void udf_destroy(udf *f)
{
    (void)f;
    ck_abort_msg("the udp filter was released more often than referenced");
}

/* udf_impl, udf_QueryInterface, udf_AddRef, udf_Release */
FWX_IUNKNOWN_IMPL(udf, IFWXDataFilter, udf, iface, refs, udf_destroy, &IID_IFWXDataFilter)

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
    udf_dir *dir = FWX_CONTAINER_OF(This, udf_dir, iface);
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

/* udf_dirs_QueryInterface, ..., udf_dirs_vtbl, udf_dirs_init */
TU_DIR_COMPLETIONS(udf_dirs, udf_dir, udf, udf_AddRef, udf_Release, udf_complete)

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
    tu_sockets_take(f->s, in, ex);
    udf_recv(f, 0);
    udf_recv(f, 1);
    return FWX_S_OK;
}

static fwx_result udf_detach(IFWXDataFilter *This)
{
    udf *f = udf_impl(This);
    atomic_fetch_add(&f->detached, 1);
    tu_sockets_release(f->s, 1);
    return FWX_S_OK;
}

static const IFWXDataFilterVtbl udf_vtbl = {udf_QueryInterface, udf_AddRef, udf_Release, udf_setsockets,
                                            udf_detach};

void udf_init(udf *f)
{
    memset(f, 0, sizeof *f);
    f->iface.lpVtbl = &udf_vtbl;
    fwx_refcount_init(&f->refs);
    udf_dirs_init(f);
}

