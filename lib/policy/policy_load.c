/*
 * fwx - policy loading: libconfig text to the indexed structures policy.c decides with.
 * Strict by design: an unknown key, a dangling reference or a malformed value fails the load
 * with the file, line and key path, because a firewall rule that silently means something
 * else is worse than one that does not load.
 * SPDX-License-Identifier: MIT
 */
#include "policy/policy_impl.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* A policy file larger than this is refused rather than read into memory. */
#define FWX__POLICY_MAX_BYTES (64u * 1024u * 1024u)
/* Settings nest a few levels deep in this format; the key path walk stops here regardless. */
#define FWX__MAX_DEPTH 32

enum name_kind { KIND_NETWORK, KIND_ADDR_SET, KIND_DOMAIN_SET, KIND_PROTOCOL, KIND_OTHER };

static const char *const kind_names[] = { "network", "address set", "domain set", "protocol", "rule" };

/* A name defined in the file, for duplicate checks and reference resolution during load. */
typedef struct name_ent {
    const char *name; /* owned by libconfig, valid while the config is */
    enum name_kind kind;
    uint32_t index;
    uint32_t seq; /* definition order: the later of two duplicates is the one reported */
    const config_setting_t *s;
} name_ent;

typedef struct loader {
    config_t cfg;
    const char *file;
    fwx_config_error *err;
    fwx_policy *p;
    name_ent *names; /* networks, address sets, domain sets: one namespace for from/to */
    size_t n_names;
    name_ent *proto_names;
    size_t n_proto_names;
} loader;

/* ---- errors ------------------------------------------------------------------------------ */

static void key_path(const config_setting_t *s, const char *child, char *buf, size_t size)
{
    const config_setting_t *chain[FWX__MAX_DEPTH];
    size_t n = 0, len = 0;
    buf[0] = '\0';
    for (const config_setting_t *it = s; it != NULL && config_setting_parent(it) != NULL && n < FWX__MAX_DEPTH;
         it = config_setting_parent(it))
        chain[n++] = it;
    while (n > 0 && len < size) {
        const config_setting_t *it = chain[--n];
        const char *sep = len > 0 ? "." : "";
        int w;
        if (config_setting_name(it) != NULL)
            w = snprintf(buf + len, size - len, "%s%s", sep, config_setting_name(it));
        else
            w = snprintf(buf + len, size - len, "%s[%d]", sep, config_setting_index(it));
        if (w < 0)
            return;
        len += (size_t)w;
    }
    if (child != NULL && len < size)
        snprintf(buf + len, size - len, "%s%s", len > 0 ? "." : "", child);
}

static void set_error(loader *ld, int line, const char *key, const char *fmt, va_list ap)
{
    if (ld->err == NULL)
        return;
    snprintf(ld->err->file, sizeof ld->err->file, "%s", ld->file);
    ld->err->line = line;
    snprintf(ld->err->key, sizeof ld->err->key, "%s", key != NULL ? key : "");
    vsnprintf(ld->err->message, sizeof ld->err->message, fmt, ap);
}

/* Reports a problem with setting s (or with its missing member `child`). */
__attribute__((format(printf, 4, 5))) static fwx_result fail_at(loader *ld, const config_setting_t *s,
                                                                   const char *child, const char *fmt, ...)
{
    char key[sizeof ld->err->key];
    va_list ap;
    key_path(s, child, key, sizeof key);
    va_start(ap, fmt);
    set_error(ld, s != NULL ? (int)config_setting_source_line(s) : 0, key, fmt, ap);
    va_end(ap);
    return FWX_E_CONFIG;
}

__attribute__((format(printf, 3, 4))) static fwx_result fail_line(loader *ld, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error(ld, line, NULL, fmt, ap);
    va_end(ap);
    return FWX_E_CONFIG;
}

static fwx_result oom(loader *ld)
{
    fail_line(ld, 0, "out of memory");
    return FWX_E_OUTOFMEMORY;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

/* ---- typed access ---------------------------------------------------------------------- */

/* `rule "ftp out"`, or `rule [3]` before the entry's name is known to be usable. */
static void describe(const config_setting_t *s, const char *kind, char *buf, size_t size)
{
    const char *name = NULL;
    if (config_setting_name(s) != NULL) {
        snprintf(buf, size, "%s \"%s\"", kind, config_setting_name(s));
        return;
    }
    if (config_setting_is_group(s) && config_setting_lookup_string(s, "name", &name) == CONFIG_TRUE &&
        name[0] != '\0')
        snprintf(buf, size, "%s \"%s\"", kind, name);
    else
        snprintf(buf, size, "%s [%d]", kind, config_setting_index(s));
}

static fwx_result check_group(loader *ld, const config_setting_t *s, const char *what, const char *const *allowed)
{
    if (!config_setting_is_group(s))
        return fail_at(ld, s, NULL, "%s: must be a group { ... }", what);
    int n = config_setting_length(s);
    for (int i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
        const char *name = config_setting_name(m);
        bool ok = false;
        for (size_t k = 0; allowed[k] != NULL && !ok; k++)
            ok = strcmp(allowed[k], name) == 0;
        if (!ok)
            return fail_at(ld, m, NULL, "%s: unknown key \"%s\"", what, name);
    }
    return FWX_S_OK;
}

/* *out is NULL when the member is absent and not required. */
static fwx_result get_str(loader *ld, const config_setting_t *g, const char *what, const char *key, bool required,
                          const char **out)
{
    const config_setting_t *m = config_setting_get_member(g, key);
    *out = NULL;
    if (m == NULL)
        return required ? fail_at(ld, g, key, "%s: missing %s", what, key) : FWX_S_OK;
    if (config_setting_type(m) != CONFIG_TYPE_STRING)
        return fail_at(ld, m, NULL, "%s: %s must be a string", what, key);
    *out = config_setting_get_string(m);
    if ((*out)[0] == '\0')
        return fail_at(ld, m, NULL, "%s: %s is empty", what, key);
    return FWX_S_OK;
}

/* A non-empty [ ... ] or ( ... ) of strings. */
static fwx_result check_str_list(loader *ld, const config_setting_t *m, const char *what, const char *key)
{
    int t = config_setting_type(m);
    if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
        return fail_at(ld, m, NULL, "%s: %s must be a list of strings", what, key);
    int n = config_setting_length(m);
    if (n == 0)
        return fail_at(ld, m, NULL, "%s: %s is empty", what, key);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(m, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING)
            return fail_at(ld, e, NULL, "%s: %s must be a list of strings", what, key);
    }
    return FWX_S_OK;
}

/* As check_str_list for member `key` of g; *out is NULL when absent and not required. */
static fwx_result get_str_list(loader *ld, const config_setting_t *g, const char *what, const char *key,
                               bool required, const config_setting_t **out)
{
    const config_setting_t *m = config_setting_get_member(g, key);
    *out = NULL;
    if (m == NULL)
        return required ? fail_at(ld, g, key, "%s: missing %s", what, key) : FWX_S_OK;
    fwx_result r = check_str_list(ld, m, what, key);
    if (r == FWX_S_OK)
        *out = m;
    return r;
}

static const char *elem_str(const config_setting_t *list, int i)
{
    return config_setting_get_string(config_setting_get_elem(list, (unsigned)i));
}

/* ---- addresses and ports --------------------------------------------------------------- */

/* Strict decimal: digits only, no sign, no leading zeros. */
static bool parse_uint(const char *s, size_t n, unsigned max, unsigned *out)
{
    unsigned v = 0;
    if (n == 0 || n > 10 || (n > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
        if (v > max)
            return false;
    }
    *out = v;
    return true;
}

static bool parse_one_addr(const char *text, size_t n, struct sockaddr_storage *out)
{
    char buf[INET6_ADDRSTRLEN + 2];
    struct sockaddr_storage raw;
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, text, n);
    buf[n] = '\0';
    if (!fwx__sa_parse(buf, 0, &raw))
        return false;
    return fwx__sa_canon((const struct sockaddr *)&raw, fwx__sa_len((const struct sockaddr *)&raw), out);
}

/* "a.b.c.d/n", "v6/n", "a-b" or one address. On failure *why says what is wrong. */
static bool parse_range(const char *text, int *family, fwx__u128 *lo, fwx__u128 *hi, const char **why)
{
    struct sockaddr_storage a, b;
    const char *slash = strchr(text, '/'), *dash = strchr(text, '-');
    *why = "not an address, cidr block or address range";
    if (slash != NULL) {
        unsigned bits;
        if (!parse_one_addr(text, (size_t)(slash - text), &a))
            return false;
        *family = a.ss_family;
        unsigned width = a.ss_family == AF_INET ? 32 : 128;
        if (!parse_uint(slash + 1, strlen(slash + 1), width, &bits)) {
            *why = "bad prefix length";
            return false;
        }
        fwx__u128_from_sa((const struct sockaddr *)&a, lo);
        fwx__u128 host = { 0, 0 };
        if (width == 32) {
            host.lo = bits == 32 ? 0 : (0xFFFFFFFFu >> bits);
        } else if (bits >= 64) {
            host.lo = bits == 128 ? 0 : UINT64_MAX >> (bits - 64);
        } else {
            host.hi = bits == 0 ? UINT64_MAX : UINT64_MAX >> bits;
            host.lo = UINT64_MAX;
        }
        if ((lo->hi & host.hi) != 0 || (lo->lo & host.lo) != 0) {
            *why = "address has bits set after the prefix";
            return false;
        }
        hi->hi = lo->hi | host.hi;
        hi->lo = lo->lo | host.lo;
        return true;
    }
    if (dash != NULL) {
        if (!parse_one_addr(text, (size_t)(dash - text), &a) || !parse_one_addr(dash + 1, strlen(dash + 1), &b))
            return false;
        if (a.ss_family != b.ss_family) {
            *why = "ends are of different address families";
            return false;
        }
        *family = a.ss_family;
        fwx__u128_from_sa((const struct sockaddr *)&a, lo);
        fwx__u128_from_sa((const struct sockaddr *)&b, hi);
        if (fwx__u128_cmp(*lo, *hi) > 0) {
            *why = "first address is above the last";
            return false;
        }
        return true;
    }
    if (!parse_one_addr(text, strlen(text), &a))
        return false;
    *family = a.ss_family;
    fwx__u128_from_sa((const struct sockaddr *)&a, lo);
    *hi = *lo;
    return true;
}

typedef struct item_vec {
    fwx__range_item *v;
    size_t n, cap;
} item_vec;

static int item_push(item_vec *iv, fwx__u128 lo, fwx__u128 hi, uint32_t owner, uint32_t order)
{
    if (iv->n == iv->cap) {
        size_t nc = iv->cap ? iv->cap * 2 : 16;
        fwx__range_item *nv = realloc(iv->v, nc * sizeof *nv);
        if (nv == NULL)
            return -1;
        iv->v = nv;
        iv->cap = nc;
    }
    fwx__range_item *it = &iv->v[iv->n++];
    it->lo = lo;
    it->hi = hi;
    it->owner = owner;
    it->order = order;
    return 0;
}

/* Adds each range of `list` to v4/v6. */
static fwx_result add_ranges(loader *ld, const config_setting_t *list, const char *what, uint32_t owner,
                             uint32_t *order, item_vec *v4, item_vec *v6)
{
    int n = config_setting_length(list);
    for (int i = 0; i < n; i++) {
        const char *text = elem_str(list, i), *why;
        int family;
        fwx__u128 lo, hi;
        if (!parse_range(text, &family, &lo, &hi, &why))
            return fail_at(ld, config_setting_get_elem(list, (unsigned)i), NULL, "%s: bad range \"%s\": %s", what,
                           text, why);
        if (item_push(family == AF_INET ? v4 : v6, lo, hi, owner, (*order)++) != 0)
            return oom(ld);
    }
    return FWX_S_OK;
}

/* "53" or "1024-65535". */
static bool parse_port_range(const char *text, uint16_t *lo, uint16_t *hi)
{
    const char *dash = strchr(text, '-');
    unsigned a, b;
    if (dash == NULL) {
        if (!parse_uint(text, strlen(text), 65535, &a))
            return false;
        b = a;
    } else if (!parse_uint(text, (size_t)(dash - text), 65535, &a) ||
               !parse_uint(dash + 1, strlen(dash + 1), 65535, &b)) {
        return false;
    }
    if (a == 0 || a > b)
        return false;
    *lo = (uint16_t)a;
    *hi = (uint16_t)b;
    return true;
}

/* ---- names --------------------------------------------------------------------------------- */

static int cmp_name_seq(const void *a, const void *b)
{
    const name_ent *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int cmp_name_key(const void *key, const void *elem)
{
    return strcmp(key, ((const name_ent *)elem)->name);
}

/* Sorts names and fails on the first duplicate in file order. */
static fwx_result sort_unique(loader *ld, name_ent *v, size_t n, const char *kind)
{
    if (n <= 0)
        return FWX_S_OK;
    qsort(v, n, sizeof *v, cmp_name_seq);
    const name_ent *worst = NULL, *first = NULL;
    for (size_t i = 1; i < n; i++)
        if (strcmp(v[i - 1].name, v[i].name) == 0 && (worst == NULL || v[i].seq < worst->seq)) {
            worst = &v[i];
            first = &v[i - 1];
        }
    if (worst == NULL)
        return FWX_S_OK;
    const char *wkind = kind != NULL ? kind : kind_names[worst->kind];
    const char *fkind = kind != NULL ? kind : kind_names[first->kind];
    if (first->s == NULL)
        return fail_at(ld, worst->s, NULL, "%s \"%s\": name is already used by the predefined %s", wkind,
                       worst->name, fkind);
    return fail_at(ld, worst->s, NULL, "%s \"%s\": name is already used by a %s (line %d)", wkind, worst->name,
                   fkind, (int)config_setting_source_line(first->s));
}

static const name_ent *find_name(const name_ent *v, size_t n, const char *name)
{
    if (n == 0)
        return NULL;
    return bsearch(name, v, n, sizeof *v, cmp_name_key);
}

/* ---- index lists ------------------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void idx_finish(fwx__idx_list *l)
{
    if (l->n < 2)
        return;
    qsort(l->v, l->n, sizeof *l->v, cmp_u32);
    size_t k = 1;
    for (size_t i = 1; i < l->n; i++)
        if (l->v[i] != l->v[k - 1])
            l->v[k++] = l->v[i];
    l->n = k;
}

/* ---- sections -------------------------------------------------------------------------- */

static const char *const predefined_networks[FWX__NET_PREDEFINED] = { "internal", "external", "localhost" };

static fwx_result load_networks(loader *ld, const config_setting_t *sec)
{
    static const char *const keys[] = { "ranges", NULL };
    fwx_policy *p = ld->p;
    int n = sec != NULL ? config_setting_length(sec) : 0;
    item_vec v4 = { 0 }, v6 = { 0 };
    fwx_result r = FWX_S_OK;
    uint32_t order = 0;

    p->networks = calloc((size_t)n + FWX__NET_PREDEFINED, sizeof *p->networks);
    if (p->networks == NULL)
        return oom(ld);
    for (uint32_t i = 0; i < FWX__NET_PREDEFINED; i++) {
        p->networks[i].index = i;
        p->networks[i].name = dup_str(predefined_networks[i]);
        p->n_networks++;
        if (p->networks[i].name == NULL)
            return oom(ld);
    }
    /* The gateway's loopback addresses go first so they win ties with equally sized ranges. */
    fwx__u128 lo4 = { 0, 0x7F000000u }, hi4 = { 0, 0x7FFFFFFFu }, one6 = { 0, 1 };
    if (item_push(&v4, lo4, hi4, FWX__NET_LOCALHOST, order++) != 0 ||
        item_push(&v6, one6, one6, FWX__NET_LOCALHOST, order++) != 0) {
        r = oom(ld);
        goto out;
    }

    for (int i = 0; i < n && r == FWX_S_OK; i++) {
        const config_setting_t *c = config_setting_get_elem(sec, (unsigned)i);
        const char *name = config_setting_name(c);
        char what[160];
        uint32_t idx = UINT32_MAX;
        describe(c, "network", what, sizeof what);
        for (uint32_t k = 0; k < FWX__NET_PREDEFINED; k++)
            if (strcmp(name, predefined_networks[k]) == 0)
                idx = k;
        if ((r = check_group(ld, c, what, keys)) != FWX_S_OK)
            break;
        if (idx == UINT32_MAX) {
            idx = (uint32_t)p->n_networks;
            p->networks[idx].index = idx;
            p->networks[idx].name = dup_str(name);
            p->n_networks++;
            if (p->networks[idx].name == NULL) {
                r = oom(ld);
                break;
            }
        }
        p->networks[idx].line = config_setting_source_line(c);
        if (idx == FWX__NET_EXTERNAL) {
            const config_setting_t *rg = config_setting_get_member(c, "ranges");
            if (rg != NULL)
                r = fail_at(ld, rg, NULL, "%s: may not have ranges (it holds every address no other network does)",
                            what);
            continue;
        }
        const config_setting_t *ranges;
        if ((r = get_str_list(ld, c, what, "ranges", idx >= FWX__NET_PREDEFINED, &ranges)) != FWX_S_OK)
            break;
        if (ranges != NULL)
            r = add_ranges(ld, ranges, what, idx, &order, &v4, &v6);
    }
    if (r == FWX_S_OK &&
        (fwx__imap_build(v4.v, v4.n, &p->net_v4) != 0 || fwx__imap_build(v6.v, v6.n, &p->net_v6) != 0))
        r = oom(ld);
out:
    free(v4.v);
    free(v6.v);
    return r;
}

static fwx_result load_addr_sets(loader *ld, const config_setting_t *sec)
{
    fwx_policy *p = ld->p;
    int n = sec != NULL ? config_setting_length(sec) : 0;
    if (n <= 0)
        return FWX_S_OK;
    p->addr_sets = calloc((size_t)n, sizeof *p->addr_sets);
    if (p->addr_sets == NULL)
        return oom(ld);
    for (int i = 0; i < n; i++) {
        const config_setting_t *c = config_setting_get_elem(sec, (unsigned)i);
        fwx__addr_set *s = &p->addr_sets[p->n_addr_sets++];
        item_vec v4 = { 0 }, v6 = { 0 };
        uint32_t order = 0;
        char what[160];
        fwx_result r;
        describe(c, "address set", what, sizeof what);
        s->line = config_setting_source_line(c);
        if ((s->name = dup_str(config_setting_name(c))) == NULL)
            return oom(ld);
        if ((r = check_str_list(ld, c, what, "the set")) != FWX_S_OK)
            return r;
        r = add_ranges(ld, c, what, 0, &order, &v4, &v6);
        if (r == FWX_S_OK && (fwx__imap_build(v4.v, v4.n, &s->v4) != 0 || fwx__imap_build(v6.v, v6.n, &s->v6) != 0))
            r = oom(ld);
        free(v4.v);
        free(v6.v);
        if (r != FWX_S_OK)
            return r;
    }
    return FWX_S_OK;
}

/* Letters, digits, '-', '_' in dot-separated non-empty labels; "*." only as a prefix. */
static bool valid_domain(const char *s)
{
    size_t n = strlen(s), label = 0;
    if (n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (isalnum(ch) || ch == '-' || ch == '_') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void sort_strings(char **v, size_t *n)
{
    if (*n < 2)
        return;
    qsort(v, *n, sizeof *v, cmp_strp);
    size_t k = 1;
    for (size_t i = 1; i < *n; i++) {
        if (strcmp(v[i], v[k - 1]) == 0)
            free(v[i]);
        else
            v[k++] = v[i];
    }
    *n = k;
}

static fwx_result load_domain_sets(loader *ld, const config_setting_t *sec)
{
    fwx_policy *p = ld->p;
    int n = sec != NULL ? config_setting_length(sec) : 0;
    if (n <= 0)
        return FWX_S_OK;
    p->domain_sets = calloc((size_t)n, sizeof *p->domain_sets);
    if (p->domain_sets == NULL)
        return oom(ld);
    for (int i = 0; i < n; i++) {
        const config_setting_t *c = config_setting_get_elem(sec, (unsigned)i);
        fwx__domain_set *d = &p->domain_sets[p->n_domain_sets++];
        char what[160];
        fwx_result r;
        describe(c, "domain set", what, sizeof what);
        d->line = config_setting_source_line(c);
        if ((d->name = dup_str(config_setting_name(c))) == NULL)
            return oom(ld);
        if ((r = check_str_list(ld, c, what, "the set")) != FWX_S_OK)
            return r;
        int m = config_setting_length(c);
        d->exact = calloc((size_t)m, sizeof *d->exact);
        d->suffix = calloc((size_t)m, sizeof *d->suffix);
        if (d->exact == NULL || d->suffix == NULL)
            return oom(ld);
        for (int k = 0; k < m; k++) {
            const char *text = elem_str(c, k);
            bool wild = strncmp(text, "*.", 2) == 0;
            /* Kept with its dot so that a suffix match is one lookup per label of the name. */
            const char *body = wild ? text + 1 : text;
            if (!valid_domain(wild ? text + 2 : text))
                return fail_at(ld, config_setting_get_elem(c, (unsigned)k), NULL,
                               "%s: bad domain name \"%s\" (want a name or \"*.\" and a name)", what, text);
            char *low = dup_str(body);
            if (low == NULL)
                return oom(ld);
            for (char *q = low; *q != '\0'; q++)
                *q = (char)tolower((unsigned char)*q);
            if (wild)
                d->suffix[d->n_suffix++] = low;
            else
                d->exact[d->n_exact++] = low;
        }
        sort_strings(d->exact, &d->n_exact);
        sort_strings(d->suffix, &d->n_suffix);
    }
    return FWX_S_OK;
}

/* One namespace for networks, address sets and domain sets: a rule's from/to names any. */
static fwx_result register_names(loader *ld, const config_setting_t *nets, const config_setting_t *asets,
                                 const config_setting_t *dsets)
{
    fwx_policy *p = ld->p;
    size_t n = p->n_networks + p->n_addr_sets + p->n_domain_sets;
    ld->names = calloc(n, sizeof *ld->names);
    if (ld->names == NULL)
        return oom(ld);
    uint32_t seq = 0;
    for (size_t i = 0; i < p->n_networks; i++) {
        name_ent *e = &ld->names[ld->n_names++];
        e->name = p->networks[i].name;
        e->kind = KIND_NETWORK;
        e->index = (uint32_t)i;
        e->seq = seq++;
        e->s = nets != NULL ? config_setting_get_member(nets, e->name) : NULL;
    }
    for (size_t i = 0; i < p->n_addr_sets; i++) {
        name_ent *e = &ld->names[ld->n_names++];
        e->name = p->addr_sets[i].name;
        e->kind = KIND_ADDR_SET;
        e->index = (uint32_t)i;
        e->seq = seq++;
        e->s = config_setting_get_elem(asets, (unsigned)i);
    }
    for (size_t i = 0; i < p->n_domain_sets; i++) {
        name_ent *e = &ld->names[ld->n_names++];
        e->name = p->domain_sets[i].name;
        e->kind = KIND_DOMAIN_SET;
        e->index = (uint32_t)i;
        e->seq = seq++;
        e->s = config_setting_get_elem(dsets, (unsigned)i);
    }
    /* Predefined networks have no setting of their own and come first, so a clash is
       always reported at a defined set. */
    return sort_unique(ld, ld->names, ld->n_names, NULL);
}

static fwx_result resolve_network(loader *ld, const config_setting_t *g, const char *what, const char *key,
                                  uint32_t *out)
{
    const char *name;
    fwx_result r = get_str(ld, g, what, key, true, &name);
    if (r != FWX_S_OK)
        return r;
    const name_ent *e = find_name(ld->names, ld->n_names, name);
    if (e == NULL || e->kind != KIND_NETWORK)
        return fail_at(ld, config_setting_get_member(g, key), NULL, "%s: unknown network \"%s\"", what, name);
    *out = e->index;
    return FWX_S_OK;
}

static int cmp_relation(const void *a, const void *b)
{
    const fwx__relation *x = a, *y = b;
    if (x->from != y->from)
        return x->from < y->from ? -1 : 1;
    return x->to < y->to ? -1 : x->to > y->to;
}

typedef struct rel_key {
    uint32_t from, to;
    int seq;
} rel_key;

/* Pair, then position. */
static int cmp_rel_key(const void *a, const void *b)
{
    const rel_key *x = a, *y = b;
    if (x->from != y->from)
        return x->from < y->from ? -1 : 1;
    if (x->to != y->to)
        return x->to < y->to ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static fwx_result load_relationships(loader *ld, const config_setting_t *sec)
{
    static const char *const keys[] = { "from", "to", "type", NULL };
    fwx_policy *p = ld->p;
    int n = sec != NULL ? config_setting_length(sec) : 0;
    if (n <= 0)
        return FWX_S_OK;
    p->relations = calloc((size_t)n, sizeof *p->relations);
    if (p->relations == NULL)
        return oom(ld);
    for (int i = 0; i < n; i++) {
        const config_setting_t *c = config_setting_get_elem(sec, (unsigned)i);
        fwx__relation *rel = &p->relations[i];
        const char *type;
        char what[64];
        fwx_result r;
        snprintf(what, sizeof what, "relationship [%d]", i);
        if ((r = check_group(ld, c, what, keys)) != FWX_S_OK ||
            (r = resolve_network(ld, c, what, "from", &rel->from)) != FWX_S_OK ||
            (r = resolve_network(ld, c, what, "to", &rel->to)) != FWX_S_OK ||
            (r = get_str(ld, c, what, "type", true, &type)) != FWX_S_OK)
            return r;
        if (strcmp(type, "nat") == 0)
            rel->type = FWX__REL_NAT;
        else if (strcmp(type, "route") == 0)
            rel->type = FWX__REL_ROUTE;
        else
            return fail_at(ld, config_setting_get_member(c, "type"), NULL,
                           "%s: bad type \"%s\" (want \"nat\" or \"route\")", what, type);
        if (rel->from == rel->to)
            return fail_at(ld, config_setting_get_member(c, "to"), NULL,
                           "%s: a network is always routed to itself", what);
        p->n_relations++;
    }
    /* Sorted by pair then by position: of two entries for one pair, the later is reported. */
    rel_key *keys_v = malloc((size_t)n * sizeof *keys_v);
    if (keys_v == NULL)
        return oom(ld);
    for (int i = 0; i < n; i++)
        keys_v[i] = (rel_key){ p->relations[i].from, p->relations[i].to, i };
    qsort(keys_v, (size_t)n, sizeof *keys_v, cmp_rel_key);
    int dup = -1, first = -1;
    for (int i = 1; i < n; i++)
        if (keys_v[i].from == keys_v[i - 1].from && keys_v[i].to == keys_v[i - 1].to &&
            (dup < 0 || keys_v[i].seq < dup)) {
            dup = keys_v[i].seq;
            first = keys_v[i - 1].seq;
        }
    free(keys_v);
    if (dup >= 0) {
        char what[64];
        snprintf(what, sizeof what, "relationship [%d]", dup);
        return fail_at(ld, config_setting_get_elem(sec, (unsigned)dup), NULL, "%s: %s to %s is already defined at line %d",
                       what, p->networks[p->relations[dup].from].name, p->networks[p->relations[dup].to].name,
                       (int)config_setting_source_line(config_setting_get_elem(sec, (unsigned)first)));
    }
    qsort(p->relations, p->n_relations, sizeof *p->relations, cmp_relation);
    return FWX_S_OK;
}

static int cmp_guid_ent(const void *a, const void *b)
{
    const fwx__guid_ent *x = a, *y = b;
    int c = memcmp(x->guid.bytes, y->guid.bytes, sizeof x->guid.bytes);
    if (c != 0)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* What a plugin may call itself in a filters list: letters, digits, '-', '_' and '.'. */
static bool plugin_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || !isalnum((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

/* A time limit in whole seconds, 0 (none) to FWX_TIMEOUTS_MAX; -1 when absent. */
static fwx_result get_seconds(loader *ld, const config_setting_t *g, const char *what, const char *key, int32_t *out)
{
    const config_setting_t *m = config_setting_get_member(g, key);
    *out = -1;
    if (m == NULL)
        return FWX_S_OK;
    int t = config_setting_type(m);
    long long v = t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64 ? config_setting_get_int64(m) : -1;
    if (v < 0 || v > (long long)FWX_TIMEOUTS_MAX)
        return fail_at(ld, m, NULL, "%s: %s must be a whole number of seconds from 0 (none) to %u", what, key,
                       FWX_TIMEOUTS_MAX);
    *out = (int32_t)v;
    return FWX_S_OK;
}

static fwx_result load_protocol(loader *ld, const config_setting_t *c, fwx__protocol *pr, const char *what)
{
    static const char *const keys[] = { "name",    "guid",         "protocol",          "port", "ports",
                                        "direction", "filters", "idle_timeout", "handshake_timeout", NULL };
    const char *name, *guid, *proto, *dir;
    const config_setting_t *filters;
    fwx_result r;
    if ((r = check_group(ld, c, what, keys)) != FWX_S_OK || (r = get_str(ld, c, what, "name", true, &name)) != FWX_S_OK ||
        (r = get_str(ld, c, what, "guid", true, &guid)) != FWX_S_OK ||
        (r = get_str(ld, c, what, "protocol", true, &proto)) != FWX_S_OK ||
        (r = get_str(ld, c, what, "direction", false, &dir)) != FWX_S_OK ||
        (r = get_str_list(ld, c, what, "filters", false, &filters)) != FWX_S_OK)
        return r;
    if (strcmp(name, "all") == 0)
        return fail_at(ld, config_setting_get_member(c, "name"), NULL,
                       "%s: \"all\" is reserved for rules that match every protocol", what);
    if ((pr->name = dup_str(name)) == NULL)
        return oom(ld);
    pr->line = config_setting_source_line(c);
    if (fwx_guid_parse(guid, &pr->guid) != FWX_S_OK)
        return fail_at(ld, config_setting_get_member(c, "guid"), NULL, "%s: bad guid \"%s\"", what, guid);
    if (strcmp(proto, "tcp") == 0)
        pr->ip_protocol = FWX_PROTOCOL_TCP;
    else if (strcmp(proto, "udp") == 0)
        pr->ip_protocol = FWX_PROTOCOL_UDP;
    else
        return fail_at(ld, config_setting_get_member(c, "protocol"), NULL,
                       "%s: bad protocol \"%s\" (want \"tcp\" or \"udp\")", what, proto);
    if (dir == NULL || strcmp(dir, "outbound") == 0)
        pr->direction = FWX__DIR_OUTBOUND;
    else if (strcmp(dir, "inbound") == 0)
        pr->direction = FWX__DIR_INBOUND;
    else
        return fail_at(ld, config_setting_get_member(c, "direction"), NULL,
                       "%s: bad direction \"%s\" (want \"outbound\" or \"inbound\")", what, dir);

    const config_setting_t *port = config_setting_get_member(c, "port");
    const config_setting_t *ports = config_setting_get_member(c, "ports");
    if (port != NULL && ports != NULL)
        return fail_at(ld, ports, NULL, "%s: give port or ports, not both", what);
    if (port == NULL && ports == NULL)
        return fail_at(ld, c, "port", "%s: missing port (or ports)", what);
    if (port != NULL) {
        int t = config_setting_type(port);
        if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
            return fail_at(ld, port, NULL, "%s: port must be a number", what);
        long long v = config_setting_get_int64(port);
        if (v < 1 || v > 65535)
            return fail_at(ld, port, NULL, "%s: port %lld is out of range 1-65535", what, v);
        pr->port_lo = pr->port_hi = (uint16_t)v;
    } else {
        if (config_setting_type(ports) != CONFIG_TYPE_STRING)
            return fail_at(ld, ports, NULL, "%s: ports must be a string \"lo-hi\"", what);
        const char *text = config_setting_get_string(ports);
        if (!parse_port_range(text, &pr->port_lo, &pr->port_hi))
            return fail_at(ld, ports, NULL, "%s: bad port range \"%s\" (want \"lo-hi\" within 1-65535, lo <= hi)",
                           what, text);
    }
    fwx_result r2;
    if ((r2 = get_seconds(ld, c, what, "idle_timeout", &pr->idle_s)) != FWX_S_OK ||
        (r2 = get_seconds(ld, c, what, "handshake_timeout", &pr->handshake_s)) != FWX_S_OK)
        return r2;
    if (filters != NULL) {
        int n = config_setting_length(filters);
        pr->filters = calloc((size_t)n, sizeof *pr->filters);
        if (pr->filters == NULL)
            return oom(ld);
        for (int i = 0; i < n; i++) {
            const char *text = elem_str(filters, i);
            const config_setting_t *e = config_setting_get_elem(filters, (unsigned)i);
            fwx__filter_ref *f = &pr->filters[i];
            f->line = config_setting_source_line(e);
            /* A filter is named by its class id or, more readably, by its plugin's name. */
            if (fwx_guid_parse(text, &f->guid) != FWX_S_OK) {
                f->guid = FWX_GUID_NULL;
                if (!plugin_name_ok(text))
                    return fail_at(ld, e, NULL,
                                   "%s: bad filter \"%s\" (want a plugin name such as \"ftp\", or a filter "
                                   "guid \"{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}\")",
                                   what, text);
                if ((f->name = dup_str(text)) == NULL)
                    return oom(ld);
            }
            pr->n_filters++;
            for (int k = 0; k < i; k++) {
                const fwx__filter_ref *o = &pr->filters[k];
                if (f->name != NULL ? o->name != NULL && strcmp(o->name, f->name) == 0
                                    : o->name == NULL && fwx_guid_equal(&o->guid, &f->guid))
                    return fail_at(ld, e, NULL, "%s: filter \"%s\" is bound twice", what, text);
            }
        }
    }
    return FWX_S_OK;
}

static fwx_result load_protocols(loader *ld, const config_setting_t *sec)
{
    fwx_policy *p = ld->p;
    int n = sec != NULL ? config_setting_length(sec) : 0;
    item_vec ports[2][2] = { { { 0 } } };
    fwx_result r = FWX_S_OK;
    if (n <= 0)
        return FWX_S_OK;
    p->protocols = calloc((size_t)n, sizeof *p->protocols);
    p->by_guid = calloc((size_t)n, sizeof *p->by_guid);
    ld->proto_names = calloc((size_t)n, sizeof *ld->proto_names);
    if (p->protocols == NULL || p->by_guid == NULL || ld->proto_names == NULL)
        return oom(ld);
    for (int i = 0; i < n; i++) {
        const config_setting_t *c = config_setting_get_elem(sec, (unsigned)i);
        fwx__protocol *pr = &p->protocols[i];
        char what[160];
        describe(c, "protocol", what, sizeof what);
        p->n_protocols++;
        if ((r = load_protocol(ld, c, pr, what)) != FWX_S_OK)
            return r;
        p->by_guid[i].guid = pr->guid;
        p->by_guid[i].index = (uint32_t)i;
        name_ent *e = &ld->proto_names[ld->n_proto_names++];
        e->name = pr->name;
        e->kind = KIND_PROTOCOL;
        e->index = (uint32_t)i;
        e->seq = (uint32_t)i;
        e->s = config_setting_get_member(c, "name");
    }
    if ((r = sort_unique(ld, ld->proto_names, ld->n_proto_names, "protocol")) != FWX_S_OK)
        return r;
    qsort(p->by_guid, p->n_protocols, sizeof *p->by_guid, cmp_guid_ent);
    const fwx__guid_ent *dup = NULL;
    for (size_t i = 1; i < p->n_protocols; i++)
        if (fwx_guid_equal(&p->by_guid[i - 1].guid, &p->by_guid[i].guid) &&
            (dup == NULL || p->by_guid[i].index < dup->index))
            dup = &p->by_guid[i];
    if (dup != NULL) {
        const fwx__protocol *later = &p->protocols[dup->index], *first = &p->protocols[(dup - 1)->index];
        return fail_at(ld, config_setting_get_member(config_setting_get_elem(sec, dup->index), "guid"), NULL,
                       "protocol \"%s\": guid is already used by protocol \"%s\" (line %d)", later->name,
                       first->name, first->line);
    }

    for (size_t i = 0; i < p->n_protocols && r == FWX_S_OK; i++) {
        const fwx__protocol *pr = &p->protocols[i];
        fwx__u128 lo = { 0, pr->port_lo }, hi = { 0, pr->port_hi };
        item_vec *iv = &ports[pr->ip_protocol == FWX_PROTOCOL_UDP][pr->direction == FWX__DIR_INBOUND];
        /* Overlapping definitions: the narrower range wins, then the one defined first. */
        if (item_push(iv, lo, hi, (uint32_t)i, (uint32_t)i) != 0)
            r = oom(ld);
    }
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            if (r == FWX_S_OK && fwx__imap_build(ports[a][b].v, ports[a][b].n, &p->proto_ports[a][b]) != 0)
                r = oom(ld);
            free(ports[a][b].v);
        }
    return r;
}

static int idx_push(fwx__idx_list *l, size_t cap, uint32_t v)
{
    if (l->v == NULL && (l->v = malloc((cap ? cap : 1) * sizeof *l->v)) == NULL)
        return -1;
    l->v[l->n++] = v;
    return 0;
}

static fwx_result load_rule(loader *ld, const config_setting_t *c, fwx__rule *ru, const char *what)
{
    static const char *const keys[] = { "name", "action", "from", "to", "protocols", "users", NULL };
    const char *name, *action;
    const config_setting_t *from, *to, *protos, *users;
    fwx_result r;
    if ((r = check_group(ld, c, what, keys)) != FWX_S_OK || (r = get_str(ld, c, what, "name", true, &name)) != FWX_S_OK ||
        (r = get_str(ld, c, what, "action", true, &action)) != FWX_S_OK ||
        (r = get_str_list(ld, c, what, "from", true, &from)) != FWX_S_OK ||
        (r = get_str_list(ld, c, what, "to", true, &to)) != FWX_S_OK ||
        (r = get_str_list(ld, c, what, "protocols", true, &protos)) != FWX_S_OK ||
        (r = get_str_list(ld, c, what, "users", false, &users)) != FWX_S_OK)
        return r;
    if ((ru->name = dup_str(name)) == NULL)
        return oom(ld);
    ru->line = config_setting_source_line(c);
    if (strcmp(action, "allow") == 0)
        ru->allow = true;
    else if (strcmp(action, "deny") != 0)
        return fail_at(ld, config_setting_get_member(c, "action"), NULL,
                       "%s: bad action \"%s\" (want \"allow\" or \"deny\")", what, action);

    int n = config_setting_length(from);
    for (int i = 0; i < n; i++) {
        const char *ref = elem_str(from, i);
        const name_ent *e = find_name(ld->names, ld->n_names, ref);
        const config_setting_t *at = config_setting_get_elem(from, (unsigned)i);
        if (e == NULL)
            return fail_at(ld, at, NULL, "%s: unknown network or address set \"%s\"", what, ref);
        if (e->kind == KIND_DOMAIN_SET)
            return fail_at(ld, at, NULL, "%s: domain set \"%s\" cannot be a source", what, ref);
        if (idx_push(e->kind == KIND_NETWORK ? &ru->from_nets : &ru->from_sets, (size_t)n, e->index) != 0)
            return oom(ld);
    }
    n = config_setting_length(to);
    for (int i = 0; i < n; i++) {
        const char *ref = elem_str(to, i);
        const name_ent *e = find_name(ld->names, ld->n_names, ref);
        if (e == NULL)
            return fail_at(ld, config_setting_get_elem(to, (unsigned)i), NULL,
                           "%s: unknown network, address set or domain set \"%s\"", what, ref);
        fwx__idx_list *l = e->kind == KIND_NETWORK ? &ru->to_nets : e->kind == KIND_ADDR_SET ? &ru->to_sets : &ru->to_domains;
        if (idx_push(l, (size_t)n, e->index) != 0)
            return oom(ld);
    }
    ru->site = ru->to_sets.n > 0 || ru->to_domains.n > 0;
    n = config_setting_length(protos);
    for (int i = 0; i < n; i++) {
        const char *ref = elem_str(protos, i);
        if (strcmp(ref, "all") == 0) {
            ru->all_protocols = true;
            continue;
        }
        const name_ent *e = find_name(ld->proto_names, ld->n_proto_names, ref);
        if (e == NULL)
            return fail_at(ld, config_setting_get_elem(protos, (unsigned)i), NULL, "%s: unknown protocol \"%s\"", what,
                           ref);
        if (idx_push(&ru->protocols, (size_t)n, e->index) != 0)
            return oom(ld);
    }
    idx_finish(&ru->from_nets);
    idx_finish(&ru->from_sets);
    idx_finish(&ru->to_nets);
    idx_finish(&ru->to_sets);
    idx_finish(&ru->to_domains);
    idx_finish(&ru->protocols);
    if (ru->all_protocols) {
        /* "all" subsumes the named ones; dropping them keeps the rule out of the per-protocol
           rows, where it would be found twice. */
        free(ru->protocols.v);
        ru->protocols.v = NULL;
        ru->protocols.n = 0;
    }
    if (users != NULL) {
        n = config_setting_length(users);
        ru->users = calloc((size_t)n, sizeof *ru->users);
        if (ru->users == NULL)
            return oom(ld);
        for (int i = 0; i < n; i++)
            if ((ru->users[ru->n_users++] = dup_str(elem_str(users, i))) == NULL)
                return oom(ld);
    }
    return FWX_S_OK;
}

static fwx_result load_rules(loader *ld, const config_setting_t *sec)
{
    fwx_policy *p = ld->p;
    int n = sec != NULL ? config_setting_length(sec) : 0;
    fwx_result r;
    if (n <= 0)
        return FWX_S_OK;
    p->rules = calloc((size_t)n, sizeof *p->rules);
    name_ent *names = calloc((size_t)n, sizeof *names);
    if (p->rules == NULL || names == NULL) {
        free(names);
        return oom(ld);
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *c = config_setting_get_elem(sec, (unsigned)i);
        char what[160];
        describe(c, "rule", what, sizeof what);
        p->n_rules++;
        if ((r = load_rule(ld, c, &p->rules[i], what)) != FWX_S_OK) {
            free(names);
            return r;
        }
        names[i].name = p->rules[i].name;
        names[i].kind = KIND_OTHER;
        names[i].seq = (uint32_t)i;
        names[i].s = config_setting_get_member(c, "name");
    }
    r = sort_unique(ld, names, (size_t)n, "rule");
    free(names);
    return r;
}

static fwx_result get_endpoint(loader *ld, const config_setting_t *c, const char *what, const char *key,
                               struct sockaddr_storage *out)
{
    const char *text;
    struct sockaddr_storage raw;
    fwx_result r = get_str(ld, c, what, key, true, &text);
    if (r != FWX_S_OK)
        return r;
    if (!fwx__sa_parse(text, 1, &raw) || fwx__sa_port((const struct sockaddr *)&raw) == 0 ||
        !fwx__sa_canon((const struct sockaddr *)&raw, fwx__sa_len((const struct sockaddr *)&raw), out))
        return fail_at(ld, config_setting_get_member(c, key), NULL,
                       "%s: bad %s \"%s\" (want \"address:port\", port 1-65535)", what, key, text);
    return FWX_S_OK;
}

static fwx_result load_publishing(loader *ld, const config_setting_t *sec)
{
    static const char *const keys[] = { "name", "listen", "server", "protocol", "full_proxy", NULL };
    fwx_policy *p = ld->p;
    int n = sec != NULL ? config_setting_length(sec) : 0;
    fwx_result r = FWX_S_OK;
    if (n <= 0)
        return FWX_S_OK;
    p->publish = calloc((size_t)n, sizeof *p->publish);
    name_ent *names = calloc((size_t)n, sizeof *names);
    if (p->publish == NULL || names == NULL) {
        free(names);
        return oom(ld);
    }
    for (int i = 0; i < n && r == FWX_S_OK; i++) {
        const config_setting_t *c = config_setting_get_elem(sec, (unsigned)i);
        fwx__publish_rule *pu = &p->publish[i];
        const char *name, *proto;
        char what[160];
        describe(c, "publishing rule", what, sizeof what);
        p->n_publish++;
        if ((r = check_group(ld, c, what, keys)) != FWX_S_OK || (r = get_str(ld, c, what, "name", true, &name)) != FWX_S_OK ||
            (r = get_endpoint(ld, c, what, "listen", &pu->listen)) != FWX_S_OK ||
            (r = get_endpoint(ld, c, what, "server", &pu->server)) != FWX_S_OK ||
            (r = get_str(ld, c, what, "protocol", true, &proto)) != FWX_S_OK)
            break;
        if ((pu->name = dup_str(name)) == NULL) {
            r = oom(ld);
            break;
        }
        pu->line = config_setting_source_line(c);
        const name_ent *e = find_name(ld->proto_names, ld->n_proto_names, proto);
        if (e == NULL) {
            r = fail_at(ld, config_setting_get_member(c, "protocol"), NULL, "%s: unknown protocol \"%s\"", what, proto);
            break;
        }
        pu->protocol = &p->protocols[e->index];
        /* The rule's protocol decides its connections (their filters, their secondary
           connections), so it must be one written for connections coming in. */
        if (pu->protocol->direction != FWX__DIR_INBOUND) {
            r = fail_at(ld, config_setting_get_member(c, "protocol"), NULL,
                        "%s: protocol \"%s\" (line %d) is an outbound definition; a publishing rule needs an "
                        "inbound one: add direction = \"inbound\"; to a protocol for the published server and "
                        "name it here",
                        what, proto, pu->protocol->line);
            break;
        }
        const config_setting_t *fp = config_setting_get_member(c, "full_proxy");
        if (fp != NULL) {
            if (config_setting_type(fp) != CONFIG_TYPE_BOOL) {
                r = fail_at(ld, fp, NULL, "%s: full_proxy must be true or false", what);
                break;
            }
            pu->full_proxy = config_setting_get_bool(fp) != 0;
        }
        names[i].name = pu->name;
        names[i].kind = KIND_OTHER;
        names[i].seq = (uint32_t)i;
        names[i].s = config_setting_get_member(c, "name");
    }
    if (r == FWX_S_OK)
        r = sort_unique(ld, names, (size_t)n, "publishing rule");
    free(names);
    return r;
}

/* ---- top level --------------------------------------------------------------------------- */

typedef struct section {
    const char *name;
    bool group; /* { ... } of named entries, else ( ... ) of entries */
} section;

static const section sections[] = {
    { "networks", true },      { "relationships", false }, { "protocols", false }, { "address_sets", true },
    { "domain_sets", true },   { "rules", false },         { "publishing", false },
};

static fwx_result find_sections(loader *ld, const config_setting_t *out[FWX__ARRAY_SIZE(sections)])
{
    const config_setting_t *root = config_root_setting(&ld->cfg);
    int n = config_setting_length(root);
    for (size_t k = 0; k < FWX__ARRAY_SIZE(sections); k++)
        out[k] = NULL;
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        const char *name = config_setting_name(s);
        /* Reserved for the host program's own settings (fwx-gateway reads it from the same file). */
        if (strcmp(name, "gateway") == 0) {
            if (config_setting_type(s) != CONFIG_TYPE_GROUP)
                return fail_at(ld, s, NULL, "gateway: must be a group { ... }");
            continue;
        }
        size_t k = 0;
        while (k < FWX__ARRAY_SIZE(sections) && strcmp(sections[k].name, name) != 0)
            k++;
        if (k == FWX__ARRAY_SIZE(sections))
            return fail_at(ld, s, NULL, "policy: unknown key \"%s\"", name);
        int t = config_setting_type(s);
        /* An empty [ ] is as good as an empty ( ). */
        bool empty_array = t == CONFIG_TYPE_ARRAY && config_setting_length(s) == 0;
        if (sections[k].group && t != CONFIG_TYPE_GROUP)
            return fail_at(ld, s, NULL, "%s: must be a group { ... }", name);
        if (!sections[k].group && t != CONFIG_TYPE_LIST && !empty_array)
            return fail_at(ld, s, NULL, "%s: must be a list ( ... )", name);
        if (empty_array)
            continue;
        out[k] = s;
    }
    return FWX_S_OK;
}

static fwx_result load_config(loader *ld)
{
    const config_setting_t *sec[FWX__ARRAY_SIZE(sections)];
    fwx_result r;
    if ((r = find_sections(ld, sec)) != FWX_S_OK || (r = load_networks(ld, sec[0])) != FWX_S_OK ||
        (r = load_addr_sets(ld, sec[3])) != FWX_S_OK || (r = load_domain_sets(ld, sec[4])) != FWX_S_OK ||
        (r = register_names(ld, sec[0], sec[3], sec[4])) != FWX_S_OK ||
        (r = load_relationships(ld, sec[1])) != FWX_S_OK || (r = load_protocols(ld, sec[2])) != FWX_S_OK ||
        (r = load_rules(ld, sec[5])) != FWX_S_OK || (r = load_publishing(ld, sec[6])) != FWX_S_OK)
        return r;
    if (fwx__policy_build_index(ld->p) != 0)
        return oom(ld);
    return FWX_S_OK;
}

/*
 * libconfig 1.5 (Debian 12) rejects a comma before a closing ) or ], which newer versions and
 * most people's habits allow. Blanking such commas keeps every line number as it was.
 * @include is refused: a policy is one self-contained file, and an included file would
 * escape this pass.
 */
static fwx_result prefilter(loader *ld, char *t)
{
    int line = 1;
    bool line_start = true;
    for (size_t i = 0; t[i] != '\0'; i++) {
        char ch = t[i];
        if (ch == '\n') {
            line++;
            line_start = true;
            continue;
        }
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v')
            continue;
        if (ch == '"') {
            for (i++; t[i] != '\0' && t[i] != '"'; i++) {
                if (t[i] == '\\' && t[i + 1] != '\0')
                    i++;
                if (t[i] == '\n')
                    line++;
            }
            if (t[i] == '\0')
                return FWX_S_OK; /* unterminated: libconfig reports it */
        } else if (ch == '#' || (ch == '/' && t[i + 1] == '/')) {
            while (t[i + 1] != '\0' && t[i + 1] != '\n')
                i++;
            continue; /* a comment does not end line_start; the newline does */
        } else if (ch == '/' && t[i + 1] == '*') {
            for (i += 2; t[i] != '\0' && !(t[i] == '*' && t[i + 1] == '/'); i++)
                if (t[i] == '\n')
                    line++;
            if (t[i] == '\0')
                return FWX_S_OK;
            i++;
            continue;
        } else if (ch == '@' && line_start && strncmp(t + i, "@include", 8) == 0) {
            return fail_line(ld, line, "@include is not supported: a policy is one file");
        } else if (ch == ',') {
            /* Look past blanks and comments for the closing bracket. */
            size_t j = i + 1;
            for (;;) {
                if (t[j] == ' ' || t[j] == '\t' || t[j] == '\r' || t[j] == '\n' || t[j] == '\f' || t[j] == '\v') {
                    j++;
                } else if (t[j] == '#' || (t[j] == '/' && t[j + 1] == '/')) {
                    while (t[j] != '\0' && t[j] != '\n')
                        j++;
                } else if (t[j] == '/' && t[j + 1] == '*') {
                    const char *end = strstr(t + j + 2, "*/");
                    if (end == NULL)
                        break;
                    j = (size_t)(end - t) + 2;
                } else {
                    break;
                }
            }
            if (t[j] == ')' || t[j] == ']')
                t[i] = ' ';
        }
        line_start = false;
    }
    return FWX_S_OK;
}

static fwx_result load_text(char *text, const char *name, fwx_policy **out, fwx_config_error *err)
{
    loader ld;
    memset(&ld, 0, sizeof ld);
    ld.file = name;
    ld.err = err;
    if (err != NULL)
        memset(err, 0, sizeof *err);
    fwx_result r = prefilter(&ld, text);
    if (r != FWX_S_OK)
        return r;
    config_init(&ld.cfg);
    if ((ld.p = calloc(1, sizeof *ld.p)) == NULL) {
        config_destroy(&ld.cfg);
        return oom(&ld);
    }
    if (config_read_string(&ld.cfg, text) != CONFIG_TRUE) {
        const char *msg = config_error_text(&ld.cfg);
        r = fail_line(&ld, config_error_line(&ld.cfg), "%s", msg != NULL ? msg : "cannot parse");
    } else {
        r = load_config(&ld);
    }
    free(ld.names);
    free(ld.proto_names);
    config_destroy(&ld.cfg);
    if (r == FWX_S_OK && (ld.p->source = dup_str(name)) == NULL)
        r = oom(&ld);
    if (r != FWX_S_OK) {
        fwx_policy_free(ld.p);
        return r;
    }
    *out = ld.p;
    return FWX_S_OK;
}

fwx_result fwx_policy_load_string(const char *text, const char *name, fwx_policy **out, fwx_config_error *err)
{
    if (name == NULL)
        name = "(string)";
    if (out != NULL)
        *out = NULL;
    if (text == NULL || out == NULL) {
        if (err != NULL) {
            memset(err, 0, sizeof *err);
            snprintf(err->file, sizeof err->file, "%s", name);
            snprintf(err->message, sizeof err->message, "policy: no text or no place for the result");
        }
        return FWX_E_CONFIG;
    }
    char *copy = dup_str(text);
    if (copy == NULL) {
        if (err != NULL) {
            memset(err, 0, sizeof *err);
            snprintf(err->file, sizeof err->file, "%s", name);
            snprintf(err->message, sizeof err->message, "out of memory");
        }
        return FWX_E_OUTOFMEMORY;
    }
    fwx_result r = load_text(copy, name, out, err);
    free(copy);
    return r;
}

static fwx_result file_error(fwx_config_error *err, const char *path, const char *fmt, const char *detail)
{
    char low[128];
    /* strerror() capitalises; every other message is lower case. */
    snprintf(low, sizeof low, "%s", detail);
    low[0] = (char)tolower((unsigned char)low[0]);
    detail = low;
    if (err != NULL) {
        memset(err, 0, sizeof *err);
        snprintf(err->file, sizeof err->file, "%s", path != NULL ? path : "(null)");
        snprintf(err->message, sizeof err->message, fmt, detail);
    }
    return FWX_E_CONFIG;
}

/* Reads a whole configuration file as text (NUL-terminated, no NUL inside). */
static fwx_result read_file(const char *path, char **text, fwx_config_error *err)
{
    *text = NULL;
    /* Opened without blocking and refused unless regular: opening a FIFO with no writer would
       wait forever (even for --check), and a device or a directory is never a policy. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return file_error(err, path, "cannot open file: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        const char *kind = S_ISFIFO(st.st_mode)   ? "a fifo"
                           : S_ISDIR(st.st_mode)  ? "a directory"
                           : S_ISSOCK(st.st_mode) ? "a socket"
                                                  : "a device";
        close(fd);
        return file_error(err, path, "not a regular file (%s): give the path of a policy file", kind);
    }
    FILE *f = fdopen(fd, "rb");
    if (f == NULL) {
        int e = errno;
        close(fd);
        return file_error(err, path, "cannot open file: %s", strerror(e));
    }
    /* Read in chunks rather than trusting a size from fstat: the file may grow meanwhile. */
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    fwx_result r = FWX_S_OK;
    while (buf != NULL) {
        if (len + 1 >= cap) {
            if (cap >= FWX__POLICY_MAX_BYTES) {
                r = file_error(err, path, "file is larger than %s", "64 MiB");
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) {
            if (ferror(f))
                r = file_error(err, path, "cannot read file: %s", strerror(errno));
            break;
        }
    }
    fclose(f);
    if (buf == NULL) {
        file_error(err, path, "%s", "out of memory");
        return FWX_E_OUTOFMEMORY;
    }
    if (r == FWX_S_OK) {
        buf[len] = '\0';
        const char *nul = memchr(buf, '\0', len);
        if (nul != NULL) {
            r = file_error(err, path, "%s", "file contains a nul byte (a policy is text)");
            if (err != NULL) {
                err->line = 1;
                for (const char *c = buf; c < nul; c++)
                    err->line += *c == '\n';
            }
        }
    }
    if (r != FWX_S_OK) {
        free(buf);
        return r;
    }
    *text = buf;
    return FWX_S_OK;
}

fwx_result fwx_policy_load_file(const char *path, fwx_policy **out, fwx_config_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (path == NULL || out == NULL)
        return file_error(err, path, "policy: %s", "no file name or no place for the result");
    char *buf;
    fwx_result r = read_file(path, &buf, err);
    if (r != FWX_S_OK)
        return r;
    r = load_text(buf, path, out, err);
    free(buf);
    return r;
}

fwx_result fwx_config_read_file(const char *path, char **text, fwx_config_error *err)
{
    if (text == NULL)
        return FWX_E_POINTER;
    *text = NULL;
    if (path == NULL)
        return file_error(err, path, "%s", "no file name");
    char *buf;
    fwx_result r = read_file(path, &buf, err);
    if (r != FWX_S_OK)
        return r;
    loader ld;
    memset(&ld, 0, sizeof ld);
    ld.file = path;
    ld.err = err;
    if (err != NULL)
        memset(err, 0, sizeof *err);
    r = prefilter(&ld, buf);
    if (r != FWX_S_OK) {
        free(buf);
        return r;
    }
    *text = buf;
    return FWX_S_OK;
}
