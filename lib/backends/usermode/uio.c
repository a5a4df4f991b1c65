/*
 * fwx - pending socket operations of the user-mode data path.
 * SPDX-License-Identifier: MIT
 */
#include "backends/usermode/uio.h"

#include <stdlib.h>

fwx__uio *fwx__uio_new(fwx__uio_kind kind, IFWXIOBuffer *buf, IFWXIOCompletion *cpl, uintptr_t ud)
{
    fwx__uio *op = calloc(1, sizeof *op);
    if (op == NULL)
        return NULL;
    op->kind = kind;
    op->buf = buf;
    op->cpl = cpl;
    op->ud = ud;
    op->ok = 1;
    if (buf != NULL)
        IFWXIOBuffer_AddRef(buf);
    if (cpl != NULL)
        IFWXIOCompletion_AddRef(cpl);
    return op;
}

fwx_result fwx__uio_new_recv(IFWXIOBuffer *buf, uint32_t core_size, IFWXIOCompletion *cpl, uintptr_t ud,
                             fwx__uio **out)
{
    *out = NULL;
    IFWXIOBuffer *core = NULL;
    if (buf == NULL) {
        fwx_result hr = fwx_iobuffer_new(core_size, &core);
        if (FWX_FAILED(hr))
            return hr;
        buf = core;
    }
    fwx__uio *op = fwx__uio_new(FWX__UIO_RECV, buf, cpl, ud);
    if (core != NULL)
        IFWXIOBuffer_Release(core); /* the record holds it now */
    if (op == NULL)
        return FWX_E_OUTOFMEMORY;
    op->core_buf = core != NULL;
    *out = op;
    return FWX_S_OK;
}

bool fwx__uio_data(IFWXIOBuffer *b, uint8_t **p, uint32_t *len)
{
    *p = NULL;
    *len = 0;
    return FWX_SUCCEEDED(IFWXIOBuffer_GetBufferAndSize(b, p, len)) && (*p != NULL || *len == 0);
}

bool fwx__uio_space(IFWXIOBuffer *b, uint8_t **p, uint32_t *cap)
{
    uint32_t data = 0;
    *p = NULL;
    *cap = 0;
    if (FWX_FAILED(IFWXIOBuffer_GetBufferAndSize(b, p, &data)) || *p == NULL)
        return false;
    return FWX_SUCCEEDED(IFWXIOBuffer_GetBufferSizes(b, cap, &data)) && *cap > 0;
}

void fwx__uio_recv_done(fwx__uio *op, uint32_t n)
{
    op->ok = 1;
    op->err = 0;
    /* A filter's own buffer may refuse (a read-only one it got from an earlier Recv(NULL)):
       then the receive fails rather than reporting bytes the buffer does not claim. */
    if (FWX_FAILED(IFWXIOBuffer_SetDataSize(op->buf, n))) {
        op->ok = 0;
        op->err = UV_EINVAL;
    }
    if (op->core_buf)
        (void)fwx_iobuffer_set_readonly(op->buf, 1); /* ours: cannot fail */
}

void fwx__uio_free(fwx__uio *op)
{
    if (op->buf != NULL)
        IFWXIOBuffer_Release(op->buf);
    if (op->cpl != NULL)
        IFWXIOCompletion_Release(op->cpl);
    if (op->acpl != NULL)
        IFWXAcceptCompletion_Release(op->acpl);
    if (op->accepted != NULL)
        IFWXNetworkSocket_Release(op->accepted);
    free(op);
}

void fwx__uio_deliver(fwx__uio *op)
{
    if (op->kind == FWX__UIO_ACCEPT) {
        IFWXNetworkSocket *as = op->ok ? op->accepted : NULL;
        op->accepted = NULL; /* handed over (+1) or released below */
        if (op->acpl != NULL)
            (void)IFWXAcceptCompletion_CompleteAsyncAccept(
                op->acpl, op->ok, op->ok ? 0 : op->err, op->listener, as,
                as != NULL ? (const struct sockaddr *)&op->addr : NULL, as != NULL ? op->addr_len : 0,
                as != NULL ? (const struct sockaddr *)&op->local : NULL, as != NULL ? op->local_len : 0, op->ud);
        else if (as != NULL)
            IFWXNetworkSocket_Release(as);
    } else if (op->cpl != NULL) {
        (void)IFWXIOCompletion_CompleteAsyncIO(op->cpl, op->ok, op->ok ? 0 : op->err, op->buf, op->ud,
                                               op->has_addr && op->kind == FWX__UIO_RECV
                                                   ? (const struct sockaddr *)&op->addr
                                                   : NULL,
                                               op->has_addr && op->kind == FWX__UIO_RECV ? op->addr_len : 0);
    }
    fwx__uio_free(op);
}

fwx__uio *fwx__uio_end_pending(fwx__uio **slot, int err)
{
    fwx__uio *op = *slot;
    if (op == NULL)
        return NULL;
    *slot = NULL;
    if (err != 0)
        fwx__uio_fail(op, err);
    else
        fwx__uio_recv_done(op, 0);
    return op;
}

fwx_result fwx__uio_sock_query(IFWXSocket *sock, bool network, const fwx_guid *riid, void **ppv)
{
    if (ppv == NULL)
        return FWX_E_POINTER;
    *ppv = NULL;
    if (riid == NULL)
        return FWX_E_POINTER;
    if (!fwx_guid_equal(riid, &IID_IUnknown) && !fwx_guid_equal(riid, &IID_IFWXSocket) &&
        !(network && fwx_guid_equal(riid, &IID_IFWXNetworkSocket)))
        return FWX_E_NOINTERFACE;
    IFWXSocket_AddRef(sock);
    *ppv = sock;
    return FWX_S_OK;
}

fwx_result fwx__uio_send_begin(bool writable, IFWXIOBuffer *buf, IFWXIOCompletion *cpl, uintptr_t ud,
                               fwx__uio **out)
{
    *out = NULL;
    if (buf == NULL)
        return FWX_E_INVALIDARG;
    if (!writable)
        return FWX_E_TERMINATING;
    *out = fwx__uio_new(FWX__UIO_SEND, buf, cpl, ud);
    return *out != NULL ? FWX_S_OK : FWX_E_OUTOFMEMORY;
}

fwx_result fwx__uio_recv_begin(bool live, bool busy, IFWXIOBuffer *buf, uint32_t core_size, IFWXIOCompletion *cpl,
                               uintptr_t ud, fwx__uio **out)
{
    *out = NULL;
    if (cpl == NULL)
        return FWX_E_POINTER;
    if (!live)
        return FWX_E_TERMINATING;
    if (busy)
        return FWX_E_INVALIDARG;
    fwx__uio *op;
    fwx_result hr = fwx__uio_new_recv(buf, core_size, cpl, ud, &op);
    if (FWX_FAILED(hr))
        return hr;
    uint8_t *mem;
    uint32_t cap;
    if (!fwx__uio_space(op->buf, &mem, &cap)) {
        fwx__uio_free(op);
        return FWX_E_INVALIDARG;
    }
    *out = op;
    return FWX_S_OK;
}
