/*
 * fwx - IFWXIOBuffer, the core's byte buffer for socket I/O.
 * SPDX-License-Identifier: MIT
 */
#include "objects/objects.h"

#include <stdlib.h>

typedef struct iobuffer {
    IFWXIOBuffer iface;
    atomic_uint ref;
    uint32_t allocated;
    uint32_t data_size;
    bool readonly;
    uint8_t bytes[]; /* allocated bytes, zero-filled */
} iobuffer;

static const IFWXIOBufferVtbl iobuffer_vtbl;

static iobuffer *impl_from_IFWXIOBuffer(IFWXIOBuffer *iface)
{
    return fwx__container_of(iface, iobuffer, iface);
}

static fwx_result iobuffer_QueryInterface(IFWXIOBuffer *This, const fwx_guid *riid, void **ppv)
{
    if (ppv == NULL)
        return FWX_E_POINTER;
    *ppv = NULL;
    if (This == NULL || riid == NULL)
        return FWX_E_POINTER;
    if (!fwx_guid_equal(riid, &IID_IUnknown) && !fwx_guid_equal(riid, &IID_IFWXIOBuffer))
        return FWX_E_NOINTERFACE;
    This->lpVtbl->AddRef(This);
    *ppv = This;
    return FWX_S_OK;
}

static uint32_t iobuffer_AddRef(IFWXIOBuffer *This)
{
    iobuffer *b = impl_from_IFWXIOBuffer(This);
    return atomic_fetch_add_explicit(&b->ref, 1, memory_order_relaxed) + 1;
}

static uint32_t iobuffer_Release(IFWXIOBuffer *This)
{
    iobuffer *b = impl_from_IFWXIOBuffer(This);
    /* acq_rel: the thread that frees must see every write made under other references. */
    uint32_t left = atomic_fetch_sub_explicit(&b->ref, 1, memory_order_acq_rel) - 1;
    if (left == 0)
        free(b);
    return left;
}

static fwx_result iobuffer_GetBufferAndSize(IFWXIOBuffer *This, uint8_t **ppBuffer, uint32_t *pdwDataSize)
{
    if (This == NULL || ppBuffer == NULL || pdwDataSize == NULL)
        return FWX_E_POINTER;
    iobuffer *b = impl_from_IFWXIOBuffer(This);
    *ppBuffer = b->bytes;
    *pdwDataSize = b->data_size;
    return FWX_S_OK;
}

static fwx_result iobuffer_SetDataSize(IFWXIOBuffer *This, uint32_t dwDataSize)
{
    if (This == NULL)
        return FWX_E_POINTER;
    iobuffer *b = impl_from_IFWXIOBuffer(This);
    if (b->readonly)
        return FWX_E_NOT_SUPPORTED;
    if (dwDataSize > b->allocated)
        return FWX_E_INVALIDARG;
    b->data_size = dwDataSize;
    return FWX_S_OK;
}

static fwx_result iobuffer_Append(IFWXIOBuffer *This, const void *pData, uint32_t dwSize)
{
    if (This == NULL || pData == NULL)
        return FWX_E_POINTER;
    iobuffer *b = impl_from_IFWXIOBuffer(This);
    if (b->readonly)
        return FWX_E_NOT_SUPPORTED;
    /* Written as a subtraction so that a huge dwSize cannot wrap the sum. */
    if (dwSize > b->allocated - b->data_size)
        return FWX_E_BUFFERFULL;
    /* memmove: a filter may append a slice of the buffer's own bytes. */
    memmove(b->bytes + b->data_size, pData, dwSize);
    b->data_size += dwSize;
    return FWX_S_OK;
}

static fwx_result iobuffer_ReadAt(IFWXIOBuffer *This, uint32_t dwOffset, void *pDest, uint32_t dwSize,
                                  uint32_t *pdwRead)
{
    if (This == NULL || pDest == NULL || pdwRead == NULL)
        return FWX_E_POINTER;
    iobuffer *b = impl_from_IFWXIOBuffer(This);
    uint32_t n = 0;
    if (dwOffset < b->data_size) {
        n = b->data_size - dwOffset;
        if (n > dwSize)
            n = dwSize;
        memcpy(pDest, b->bytes + dwOffset, n);
    }
    *pdwRead = n;
    return FWX_S_OK;
}

static fwx_result iobuffer_SendToBuffer(IFWXIOBuffer *This, IFWXIOBuffer *pTarget)
{
    if (This == NULL || pTarget == NULL)
        return FWX_E_POINTER;
    iobuffer *b = impl_from_IFWXIOBuffer(This);
    /* Through the target's own Append, so a filter's buffer implementation works too and
       Append's all-or-nothing rule gives SendToBuffer its "nothing copied" on BUFFERFULL. */
    return pTarget->lpVtbl->Append(pTarget, b->bytes, b->data_size);
}

static fwx_result iobuffer_GetBufferSizes(IFWXIOBuffer *This, uint32_t *pdwAllocated, uint32_t *pdwDataSize)
{
    if (This == NULL || pdwAllocated == NULL || pdwDataSize == NULL)
        return FWX_E_POINTER;
    iobuffer *b = impl_from_IFWXIOBuffer(This);
    *pdwAllocated = b->allocated;
    *pdwDataSize = b->data_size;
    return FWX_S_OK;
}

static const IFWXIOBufferVtbl iobuffer_vtbl = {
    iobuffer_QueryInterface, iobuffer_AddRef,   iobuffer_Release,      iobuffer_GetBufferAndSize,
    iobuffer_SetDataSize,    iobuffer_Append,   iobuffer_ReadAt,       iobuffer_SendToBuffer,
    iobuffer_GetBufferSizes,
};

fwx_result fwx__iobuffer_new(uint32_t size, IFWXIOBuffer **out)
{
    if (out == NULL)
        return FWX_E_POINTER;
    *out = NULL;
    if (size == 0 || size > FWX__IOBUFFER_MAX)
        return FWX_E_INVALIDARG;
    /* Zero-filled: a filter that sets a data size without writing must not send old heap
       contents to the network. */
    iobuffer *b = calloc(1, sizeof *b + size);
    if (b == NULL)
        return FWX_E_OUTOFMEMORY;
    b->iface.lpVtbl = &iobuffer_vtbl;
    atomic_init(&b->ref, 1);
    b->allocated = size;
    b->data_size = 0;
    b->readonly = false;
    *out = &b->iface;
    return FWX_S_OK;
}

bool fwx__iobuffer_is_ours(IFWXIOBuffer *b)
{
    return b != NULL && b->lpVtbl == &iobuffer_vtbl;
}

uint8_t *fwx__iobuffer_raw(IFWXIOBuffer *iface, uint32_t *data_size, uint32_t *allocated)
{
    if (!fwx__iobuffer_is_ours(iface))
        return NULL;
    iobuffer *b = impl_from_IFWXIOBuffer(iface);
    if (data_size != NULL)
        *data_size = b->data_size;
    if (allocated != NULL)
        *allocated = b->allocated;
    return b->bytes;
}

void fwx__iobuffer_set_readonly(IFWXIOBuffer *iface, bool ro)
{
    if (!fwx__iobuffer_is_ours(iface))
        return;
    impl_from_IFWXIOBuffer(iface)->readonly = ro;
}
