/*
 * fwx examples - JSON output through libjansson, with the one escaping rule every JSON line of
 * the examples follows (the control socket's answers and events, the gateway's JSON log lines).
 * SPDX-License-Identifier: MIT
 *
 * The rule: a string is written as UTF-8; `"`, `\` and the control characters U+0000-U+001F
 * are escaped (jansson's encoder does that); a byte that does not start a valid UTF-8 sequence
 * (a plugin's name, a peer's bytes in a reason) becomes U+FFFD, so every line is valid JSON and
 * a reader never sees raw control bytes. NULL is JSON null.
 */
#ifndef FWX_EXAMPLES_JSON_H
#define FWX_EXAMPLES_JSON_H

#include <jansson.h>
#include <stdio.h>

/* A new JSON string (or null for NULL) under the rule above; NULL only when out of memory. */
json_t *ex_json_text(const char *s);

/* One compact line ("...}\n") of @p o, malloc()ed; NULL when out of memory. Takes @p o (even
   when it is NULL, which makes the answer NULL: a json_pack that failed). */
char *ex_json_line(json_t *o, size_t *len);

/* Writes one compact line of @p o to @p f and flushes it; takes @p o. -1 on failure. */
int ex_json_print(FILE *f, json_t *o);

#endif
