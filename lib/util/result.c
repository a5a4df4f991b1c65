/*
 * fwx - result code names and messages, generated from FWX_RESULT_MAP.
 * SPDX-License-Identifier: MIT
 */
#include "util/util.h"

#include <errno.h>

/* A switch rather than a table: the compiler checks the map has no duplicate values
   (a duplicate case label is an error), which a lookup array would silently accept. */
const char *fwx_strerror(fwx_result r)
{
    switch (r) {
#define FWX__STRERROR_CASE(name, value, msg)                                                      \
    case FWX_##name:                                                                              \
        return msg;
        FWX_RESULT_MAP(FWX__STRERROR_CASE)
#undef FWX__STRERROR_CASE
    default:
        return "unknown result code";
    }
}

const char *fwx_err_name(fwx_result r)
{
    switch (r) {
#define FWX__ERR_NAME_CASE(name, value, msg)                                                      \
    case FWX_##name:                                                                              \
        return "FWX_" #name;
        FWX_RESULT_MAP(FWX__ERR_NAME_CASE)
#undef FWX__ERR_NAME_CASE
    default:
        return "FWX_UNKNOWN";
    }
}

fwx_result fwx__result_from_errno(int err, fwx_result fallback)
{
    switch (err < 0 ? -err : err) {
    case EADDRINUSE:
        return FWX_E_ADDRINUSE;
    case EADDRNOTAVAIL:
        return FWX_E_ADDRNOTAVAIL;
    case ECONNREFUSED:
        return FWX_E_CONNREFUSED;
    case ENOMEM:
        return FWX_E_OUTOFMEMORY;
    case EINVAL:
        return FWX_E_INVALIDARG;
    default:
        return fallback;
    }
}
