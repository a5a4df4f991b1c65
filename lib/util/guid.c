/*
 * fwx - GUID text form.
 * SPDX-License-Identifier: MIT
 */
#include "util/util.h"

/* Offsets of the dashes in the brace-less form "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx". */
#define FWX__GUID_TEXT_LEN 36

static bool is_dash_pos(unsigned i)
{
    return i == 8 || i == 13 || i == 18 || i == 23;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *fwx_guid_format(const fwx_guid *g, char out[FWX_GUID_STRLEN])
{
    static const char digits[] = "0123456789abcdef";
    if (out == NULL)
        return NULL;
    if (g == NULL)
        g = &FWX_GUID_NULL;
    char *p = out;
    *p++ = '{';
    for (unsigned i = 0; i < 16; i++) {
        /* Bytes go out in storage order: the text form and the byte form are the same thing. */
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = digits[g->bytes[i] >> 4];
        *p++ = digits[g->bytes[i] & 0x0F];
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

fwx_result fwx_guid_parse(const char *text, fwx_guid *out)
{
    if (text == NULL || out == NULL)
        return FWX_E_INVALIDARG;
    bool braced = text[0] == '{';
    const char *s = text + (braced ? 1 : 0);
    fwx_guid g;
    unsigned nbyte = 0;
    /* Walk exactly 36 characters; the NUL check inside stops short strings before reading past
       their end. */
    for (unsigned i = 0; i < FWX__GUID_TEXT_LEN; i += 1) {
        if (s[i] == '\0')
            return FWX_E_INVALIDARG;
        if (is_dash_pos(i)) {
            if (s[i] != '-')
                return FWX_E_INVALIDARG;
            continue;
        }
        int hi = hex_value(s[i]);
        if (hi < 0 || s[i + 1] == '\0')
            return FWX_E_INVALIDARG;
        int lo = hex_value(s[i + 1]);
        if (lo < 0)
            return FWX_E_INVALIDARG;
        g.bytes[nbyte++] = (uint8_t)((hi << 4) | lo);
        i += 1;
    }
    s += FWX__GUID_TEXT_LEN;
    if (braced) {
        if (*s != '}')
            return FWX_E_INVALIDARG;
        s++;
    }
    if (*s != '\0' || nbyte != 16)
        return FWX_E_INVALIDARG;
    *out = g;
    return FWX_S_OK;
}
