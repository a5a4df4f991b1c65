/*
 * fwx - the one struct_size rule (include/fwx/common.h, "Struct sizes"), for every entry point
 * that takes or fills a public struct.
 * SPDX-License-Identifier: MIT
 */
#include "util/util.h"

/* Every struct that follows the rule has its uint32_t struct_size first. */
static uint32_t size_of(const void *s)
{
    uint32_t size;
    memcpy(&size, s, sizeof size);
    return size;
}

bool fwx__struct_in(void *local, size_t ours, const void *in, size_t first)
{
    memset(local, 0, ours);
    uint32_t size = size_of(in);
    if (!fwx__struct_size_ok(size, first, ours))
        return false;
    /* Fields beyond the caller's size stay zero: every appended field's default is its zero. */
    memcpy(local, in, size);
    uint32_t full = (uint32_t)ours;
    memcpy(local, &full, sizeof full);
    return true;
}

bool fwx__struct_init(void *out, uint32_t size, const void *defaults, size_t ours, size_t first)
{
    if (!fwx__struct_size_ok(size, first, ours))
        return false;
    memcpy(out, &size, sizeof size);
    memcpy((char *)out + sizeof size, (const char *)defaults + sizeof size, size - sizeof size);
    return true;
}

bool fwx__struct_out(void *out, const void *local, size_t ours, size_t first)
{
    uint32_t size = size_of(out);
    /* 0: a zeroed struct of a caller built against fwx 1.0, when fwx set the size itself; such
       a caller's struct is the first version. */
    if (size == 0)
        size = (uint32_t)first;
    if (!fwx__struct_size_ok(size, first, ours))
        return false;
    /* The caller's struct_size is its own: everything after it, and nothing past its size. */
    memcpy((char *)out + sizeof size, (const char *)local + sizeof size, size - sizeof size);
    return true;
}

fwx_result fwx__struct_refused(fwx_firewall *fw, const char *call, const char *type, uint32_t size, size_t first,
                               size_t ours)
{
    if (first == ours)
        fwx_firewall_log(fw, FWX_LOG_ERROR, "%s: %s of struct_size %u refused: this library takes %zu", call, type,
                         size, ours);
    else
        fwx_firewall_log(fw, FWX_LOG_ERROR, "%s: %s of struct_size %u refused: this library takes %zu to %zu", call,
                         type, size, first, ours);
    return FWX_E_INVALIDARG;
}
