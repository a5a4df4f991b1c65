/*
 * fwx examples - JSON output through libjansson (see json.h for the escaping rule).
 * SPDX-License-Identifier: MIT
 */
#include "json.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if it is not one: no overlong
   forms, no surrogates, nothing above U+10FFFF (RFC 3629), as jansson itself requires. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t len;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : lo; /* overlong */
        hi = c == 0xED ? 0x9F : hi; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : lo;
        hi = c == 0xF4 ? 0x8F : hi;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

json_t *ex_json_text(const char *s)
{
    if (s == NULL)
        return json_null();
    size_t n = strlen(s);
    json_t *j = json_stringn(s, n); /* NULL when s is not valid UTF-8 (or out of memory) */
    if (j != NULL)
        return j;
    /* Each bad byte becomes U+FFFD (3 bytes): at most 3n. */
    char *fixed = malloc(3 * n + 1);
    if (fixed == NULL)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq(p + i, n - i);
        if (len == 0) {
            memcpy(fixed + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(fixed + o, p + i, len);
            o += len;
            i += len;
        }
    }
    j = json_stringn(fixed, o);
    free(fixed);
    return j;
}

char *ex_json_line(json_t *o, size_t *len)
{
    if (o == NULL)
        return NULL;
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (text == NULL)
        return NULL;
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (line == NULL) {
        free(text);
        return NULL;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    if (len != NULL)
        *len = n + 1;
    return line;
}

int ex_json_print(FILE *f, json_t *o)
{
    size_t n;
    char *line = ex_json_line(o, &n);
    if (line == NULL)
        return -1;
    int rc = fwrite(line, 1, n, f) == n && fflush(f) == 0 ? 0 : -1;
    free(line);
    return rc;
}
