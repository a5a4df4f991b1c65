/*
 * fwx - the core's own small COM objects: IFWXIpFilter and IFWXIOBuffer. Not installed.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_OBJECTS_H
#define FWX_OBJECTS_H

#include "util/util.h"

/* Largest buffer IFWXFirewall::CreateBuffer hands out (sdk.h: "1 byte to 16 MiB"). */
#define FWX__IOBUFFER_MAX (16u * 1024u * 1024u)

/* ---- IFWXIpFilter --------------------------------------------------------------------- */

/* An empty filter, refcount 1. FWX_E_POINTER, FWX_E_OUTOFMEMORY. */
fwx_result fwx__ipfilter_new(IFWXIpFilter **out);
/* True when f is the core's implementation (so its sets can be read directly). */
bool fwx__ipfilter_is_ours(IFWXIpFilter *f);

/* ---- IFWXIOBuffer --------------------------------------------------------------------- */

/* A zero-filled buffer of size bytes (1..FWX__IOBUFFER_MAX), data size 0, refcount 1.
   FWX_E_POINTER, FWX_E_INVALIDARG (size), FWX_E_OUTOFMEMORY. */
fwx_result fwx__iobuffer_new(uint32_t size, IFWXIOBuffer **out);
/* True when b is the core's implementation; the fwx__iobuffer_* calls below need one. */
bool fwx__iobuffer_is_ours(IFWXIOBuffer *b);
/* The bytes of one of our buffers for the data path (borrowed, valid while b is referenced);
   data_size and allocated may be NULL. NULL when b is not ours. Writing through the pointer
   bypasses the read-only flag: the core fills receive buffers this way. */
uint8_t *fwx__iobuffer_raw(IFWXIOBuffer *b, uint32_t *data_size, uint32_t *allocated);
/* While ro, SetDataSize and Append fail with FWX_E_NOT_SUPPORTED: set on a core-allocated
   receive buffer handed to a filter (Recv(NULL)), which must not modify it. No-op if not ours. */
void fwx__iobuffer_set_readonly(IFWXIOBuffer *b, bool ro);

#endif /* FWX_OBJECTS_H */
