/*
 * fwx tests - the "nft" backend's set elements over netlink (lib/backends/nft/nl.c): per-element
 * results in one batch (a refused element refuses its group, the other groups stand), a grant
 * the kernel refuses refused precisely (its grant_add fails, the grants around it stay), and
 * 10,000 outstanding grants added and removed leaving the sets empty.
 *
 * Each test makes the three namespaces (netns.h) and enters the gateway namespace, where the
 * backend's table lives; what the kernel holds is read back with the nft command
 * (`nft -n list set ...`) run from this thread, so in this namespace.
 * Not root, or no namespaces: the whole program exits 77 (meson: skipped) with the reason.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "netns.h"
#include "backends/nft/nft_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef tn_gw gw;

/* The shared gateway fixture (netns.h) with the nft backend. */
static void gw_open(gw *g) { tn_gw_open(g, "nl", false, NULL, NULL, "nft"); }

/* `nft -n list set inet TABLE SET` (`list map` for the maps) in this namespace: the output
   (malloc'd), or NULL when the command failed. */
static char *list_set(const gw *g, const char *set)
{
    char cmd[256];
    bool map = strncmp(set, "dnat", 4) == 0 || strncmp(set, "snat", 4) == 0;
    snprintf(cmd, sizeof cmd, "nft -n list %s inet %s %s 2>&1", map ? "map" : "set", g->table, set);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    ck_assert_ptr_nonnull(out);
    for (size_t r; (r = fread(out + n, 1, cap - n - 1, p)) > 0;) {
        n += r;
        if (cap - n < 4096) {
            out = realloc(out, cap *= 2);
            ck_assert_ptr_nonnull(out);
        }
    }
    out[n] = '\0';
    int rc = pclose(p);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", cmd, out);
        free(out);
        return NULL;
    }
    return out;
}

/* How many times `needle` occurs in the set's listing (-1: the listing failed). */
static long count_in_set(const gw *g, const char *set, const char *needle)
{
    char *t = list_set(g, set);
    if (t == NULL)
        return -1;
    long n = 0;
    for (const char *p = strstr(t, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    free(t);
    return n;
}

/* Is the element "key" (nft text) in the set? A key is followed by a comma, a space or a newline. */
static bool in_set(const gw *g, const char *set, const char *key)
{
    char *t = list_set(g, set);
    ck_assert_ptr_nonnull(t);
    size_t k = strlen(key);
    bool found = false;
    for (const char *p = strstr(t, key); p != NULL && !found; p = strstr(p + 1, key))
        found = p[k] == ',' || p[k] == ' ' || p[k] == '\n';
    free(t);
    return found;
}

/* One batch, three groups: the second holds an element of a set the table does not have, so
   the kernel refuses it (ENOENT) and its other element is not in place either (ECANCELED);
   the first and third groups stand. Then a batch of deletes with one element that is not
   there: that one gets ENOENT, the others are deleted. */
START_TEST(batch_refuses_one_group)
{
    gw g;
    gw_open(&g);
    fwx__nftnl *h = NULL;
    TU_EXPECT_HR(fwx__nftnl_open(g.table, &h), FWX_S_OK);
    fwx__nftnl_op ops[] = {
        {.set = "once4", .key = TN_CLIENT " . " TN_SERVER " . 6 . 5001", .group = 0},
        {.set = "dnat4", .key = TN_GW_IN " . 6 . 40001", .data = TN_CLIENT " . 5001", .group = 0},
        {.set = "allow4", .key = TN_CLIENT " . " TN_SERVER " . 6 . 5002", .group = 1},
        {.set = "nosuch4", .key = TN_CLIENT " . " TN_SERVER " . 6 . 5002", .group = 1},
        {.set = "once4", .key = TN_CLIENT " . " TN_SERVER " . 6 . 5003", .timeout_ms = 60000, .group = 2},
    };
    ck_assert_int_eq(fwx__nftnl_apply(h, ops, 5), 2);
    ck_assert_int_eq(ops[0].err, 0);
    ck_assert_int_eq(ops[1].err, 0);
    ck_assert_int_eq(ops[2].err, ECANCELED);
    ck_assert_int_eq(ops[3].err, ENOENT);
    ck_assert_int_eq(ops[4].err, 0);
    ck_assert(in_set(&g, "once4", TN_CLIENT " . " TN_SERVER " . 6 . 5001"));
    ck_assert(in_set(&g, "once4", TN_CLIENT " . " TN_SERVER " . 6 . 5003"));
    ck_assert(in_set(&g, "dnat4", TN_GW_IN " . 6 . 40001 : " TN_CLIENT " . 5001"));
    ck_assert_int_eq(count_in_set(&g, "allow4", " . 6 . "), 0);
    /* A map element of the same key with other data is refused (EEXIST), the set's own stays. */
    fwx__nftnl_op clash = {.set = "dnat4", .key = TN_GW_IN " . 6 . 40001", .data = TN_OTHER " . 5001"};
    ck_assert_int_eq(fwx__nftnl_apply(h, &clash, 1), 1);
    ck_assert_int_eq(clash.err, EEXIST);
    ck_assert(in_set(&g, "dnat4", TN_GW_IN " . 6 . 40001 : " TN_CLIENT " . 5001"));

    fwx__nftnl_op del[] = {
        {.del = true, .set = "once4", .key = TN_CLIENT " . " TN_SERVER " . 6 . 5001", .group = 0},
        {.del = true, .set = "once4", .key = TN_CLIENT " . " TN_SERVER " . 6 . 5999", .group = 1},
        {.del = true, .set = "dnat4", .key = TN_GW_IN " . 6 . 40001", .group = 2},
    };
    ck_assert_int_eq(fwx__nftnl_apply(h, del, 3), 1);
    ck_assert_int_eq(del[0].err, 0);
    ck_assert_int_eq(del[1].err, ENOENT);
    ck_assert_int_eq(del[2].err, 0);
    ck_assert(!in_set(&g, "once4", TN_CLIENT " . " TN_SERVER " . 6 . 5001"));
    ck_assert(in_set(&g, "once4", TN_CLIENT " . " TN_SERVER " . 6 . 5003"));
    ck_assert_int_eq(count_in_set(&g, "dnat4", " . 6 . "), 0);
    /* Text that is no element of these types never reaches the kernel. */
    fwx__nftnl_op bad = {.set = "once4", .key = TN_CLIENT " . " TN_SERVER " . 6 . 70000"};
    ck_assert_int_eq(fwx__nftnl_apply(h, &bad, 1), 1);
    ck_assert_int_eq(bad.err, EINVAL);
    fwx__nftnl_close(h);
    tn_gw_close(&g);
}
END_TEST

/* The encoding of nft text into a set's key bytes: registers of 32 bits, inet_proto one byte,
   inet_service two in network order. */
START_TEST(key_encoding)
{
    uint8_t b[64];
    ck_assert_uint_eq(fwx__nftnl_encode("10.0.0.2 . 10.0.0.9 . 6 . 2121", b, sizeof b), 16);
    const uint8_t want[16] = {10, 0, 0, 2, 10, 0, 0, 9, 6, 0, 0, 0, 0x08, 0x49, 0, 0};
    ck_assert_int_eq(memcmp(b, want, 16), 0);
    ck_assert_uint_eq(fwx__nftnl_encode("2001:db8::1 . 17 . 53", b, sizeof b), 24);
    ck_assert_uint_eq(b[16], 17);
    ck_assert_uint_eq(b[20], 0);
    ck_assert_uint_eq(b[21], 53);
    ck_assert_uint_eq(fwx__nftnl_encode("10.0.0.2 . 5001", b, sizeof b), 8);
    ck_assert_uint_eq(fwx__nftnl_encode("10.0.0.2 . 300 . 1", b, sizeof b), 0);  /* no such protocol */
    ck_assert_uint_eq(fwx__nftnl_encode("10.0.0.2 . 6 . 65536", b, sizeof b), 0); /* no such port */
    ck_assert_uint_eq(fwx__nftnl_encode("10.0.0.2 .  6", b, sizeof b), 0);
    ck_assert_uint_eq(fwx__nftnl_encode("host . 6 . 1", b, sizeof b), 0);
    ck_assert_uint_eq(fwx__nftnl_encode("10.0.0.2 . -1", b, sizeof b), 0);
    ck_assert_uint_eq(fwx__nftnl_encode("2001:db8::1 . 2001:db8::2 . 6 . 1", b, 32), 0); /* too long for 32 */
    /* Built from addresses without text (the permission path): the same bytes, and the same
       text back. */
    struct sockaddr_storage c = tu_addr("10.0.0.2:40000"), t = tu_addr("10.0.0.9:2121"), v6 = tu_addr("[2001:db8::1]:53");
    uint8_t k[64];
    char text[160];
    ck_assert_uint_eq(fwx__nftnl_key(k, sizeof k, TU_SA(c), TU_SA(t), 6, 2121), 16);
    ck_assert_int_eq(memcmp(k, want, 16), 0);
    ck_assert_uint_eq(fwx__nftnl_text(AF_INET, k, 16, text, sizeof text), strlen("10.0.0.2 . 10.0.0.9 . 6 . 2121"));
    ck_assert_str_eq(text, "10.0.0.2 . 10.0.0.9 . 6 . 2121");
    ck_assert_uint_eq(fwx__nftnl_key(k, sizeof k, TU_SA(v6), NULL, 17, 53), 24);
    ck_assert_uint_eq(fwx__nftnl_encode("2001:db8::1 . 17 . 53", b, sizeof b), 24);
    ck_assert_int_eq(memcmp(k, b, 24), 0);
    fwx__nftnl_text(AF_INET6, k, 24, text, sizeof text);
    ck_assert_str_eq(text, "2001:db8::1 . 17 . 53");
    ck_assert_uint_eq(fwx__nftnl_key(k, sizeof k, TU_SA(t), NULL, -1, 5001), 8);
    fwx__nftnl_text(AF_INET, k, 8, text, sizeof text);
    ck_assert_str_eq(text, "10.0.0.9 . 5001");
    ck_assert_uint_eq(fwx__nftnl_key(k, sizeof k, TU_SA(c), TU_SA(v6), 6, 1), 0); /* mixed families */
    ck_assert_uint_eq(fwx__nftnl_key(k, 32, TU_SA(v6), TU_SA(v6), 6, 1), 0);      /* too long for 32 */
    ck_assert_uint_eq(fwx__nftnl_key(k, sizeof k, TU_SA(c), NULL, 300, -1), 0);    /* no such protocol */
}
END_TEST

/* Destroy (Linux 6.3): a delete that does not fail when the element is missing. Where the
   probe finds it, destroying a missing element is no error and a present one is deleted;
   where it does not, the op is a plain delete and a missing element is ENOENT. */
START_TEST(destroy_element)
{
    gw g;
    gw_open(&g);
    fwx__nftnl *h = NULL;
    TU_EXPECT_HR(fwx__nftnl_open(g.table, &h), FWX_S_OK);
    bool can = fwx__nftnl_probe_destroy(h, "used4", "0.0.0.0 . 0.0.0.0 . 0 . 0");
    fwx__nftnl_op add = {.set = "used4", .key = TN_CLIENT " . " TN_SERVER " . 6 . 5001"};
    ck_assert_int_eq(fwx__nftnl_apply(h, &add, 1), 0);
    ck_assert(in_set(&g, "used4", TN_CLIENT " . " TN_SERVER " . 6 . 5001"));
    fwx__nftnl_op d[] = {
        {.del = true, .destroy = true, .set = "used4", .key = TN_CLIENT " . " TN_SERVER " . 6 . 5001", .group = 0},
        {.del = true, .destroy = true, .set = "used4", .key = TN_CLIENT " . " TN_SERVER " . 6 . 5999", .group = 1},
    };
    ck_assert_int_eq(fwx__nftnl_apply(h, d, 2), can ? 0 : 1);
    ck_assert_int_eq(d[0].err, 0);
    ck_assert_int_eq(d[1].err, can ? 0 : ENOENT);
    ck_assert(!in_set(&g, "used4", TN_CLIENT " . " TN_SERVER " . 6 . 5001"));
    fwx__nftnl_close(h);
    tn_gw_close(&g);
}
END_TEST

/* One element looked up (fwx__nftnl_has): there after its add, not after its delete, nor one
   never added. */
START_TEST(element_lookup)
{
    gw g;
    gw_open(&g);
    fwx__nftnl *h = NULL;
    TU_EXPECT_HR(fwx__nftnl_open(g.table, &h), FWX_S_OK);
    uint8_t k[64], other[64];
    size_t kl = fwx__nftnl_encode(TN_CLIENT " . " TN_SERVER " . 6 . 5001", k, sizeof k);
    size_t ol = fwx__nftnl_encode(TN_CLIENT " . " TN_SERVER " . 6 . 5002", other, sizeof other);
    ck_assert(kl > 0 && ol > 0);
    ck_assert_int_eq(fwx__nftnl_has(h, "used4", k, kl), 0);
    fwx__nftnl_op add = {.set = "used4", .kbin = k, .klen = kl};
    ck_assert_int_eq(fwx__nftnl_apply(h, &add, 1), 0);
    ck_assert_int_eq(fwx__nftnl_has(h, "used4", k, kl), 1);
    ck_assert_int_eq(fwx__nftnl_has(h, "used4", other, ol), 0);
    fwx__nftnl_op del = {.del = true, .set = "used4", .kbin = k, .klen = kl};
    ck_assert_int_eq(fwx__nftnl_apply(h, &del, 1), 0);
    ck_assert_int_eq(fwx__nftnl_has(h, "used4", k, kl), 0);
    fwx__nftnl_close(h);
    tn_gw_close(&g);
}
END_TEST

static fwx_grant permission(uint64_t id, const char *target)
{
    fwx_grant gr;
    memset(&gr, 0, sizeof gr);
    gr.struct_size = sizeof gr;
    gr.kind = FWX_GRANT_PERMISSION;
    gr.id = id;
    gr.protocol = FWX_PROTOCOL_TCP;
    gr.client = tu_addr(TN_CLIENT);
    gr.target = tu_addr(target);
    gr.kernel_mode = 1;
    return gr;
}

/* A grant whose source NAT element clashes with one already in the snat map (put there by
   hand): the kernel refuses that element, so that grant_add fails with FWX_E_BACKEND and a
   line naming the element, and none of its elements is left; the grants before and after it
   are in place, and removing them leaves the sets as they were. */
START_TEST(grant_refused_precisely)
{
    gw g;
    gw_open(&g);
    const fwx_backend *b = fwx_backend_find("nft");
    ck_assert_ptr_nonnull(b);
    void *st = fwx_firewall_backend_state(g.fw);
    ck_assert_int_eq(tn_sh("nft add element inet %s snat4 '{ " TN_CLIENT " . " TN_SERVER " . 6 . 5002 : "
                           TN_GW_IN " }'", g.table), 0);
    fwx_grant g1 = permission(9001, TN_SERVER ":5001"), g2 = permission(9002, TN_SERVER ":5002"),
              g3 = permission(9003, TN_SERVER ":5003");
    g2.gateway = tu_addr(TN_GW_OUT); /* ProxyExternalAddress: an snat4 element of the same key */
    TU_EXPECT_HR(b->grant_add(st, &g1), FWX_S_OK);
    TU_EXPECT_HR(b->grant_add(st, &g2), FWX_E_BACKEND);
    TU_EXPECT_HR(b->grant_add(st, &g3), FWX_S_OK);
    ck_assert_int_eq(tu_log_count("permission 9002: refused: element snat4 { " TN_CLIENT " . " TN_SERVER " . 6 . 5002 }",
                                  "File exists"), 1);
    ck_assert(in_set(&g, "once4", TN_CLIENT " . " TN_SERVER " . 6 . 5001"));
    ck_assert(!in_set(&g, "once4", TN_CLIENT " . " TN_SERVER " . 6 . 5002"));
    ck_assert(in_set(&g, "once4", TN_CLIENT " . " TN_SERVER " . 6 . 5003"));
    ck_assert(in_set(&g, "snat4", TN_CLIENT " . " TN_SERVER " . 6 . 5002 : " TN_GW_IN));
    TU_EXPECT_HR(b->grant_remove(st, 9002), FWX_E_NOT_FOUND); /* never tracked */
    /* The same grant again, once the clash is gone, is taken. */
    ck_assert_int_eq(tn_sh("nft delete element inet %s snat4 '{ " TN_CLIENT " . " TN_SERVER " . 6 . 5002 }'",
                           g.table), 0);
    TU_EXPECT_HR(b->grant_add(st, &g2), FWX_S_OK);
    ck_assert(in_set(&g, "snat4", TN_CLIENT " . " TN_SERVER " . 6 . 5002 : " TN_GW_OUT));
    const uint64_t ids[] = {9001, 9002, 9003};
    TU_EXPECT_HR(b->grant_remove_many(st, ids, 3), FWX_S_OK);
    ck_assert_int_eq(count_in_set(&g, "once4", " . 6 . "), 0);
    ck_assert_int_eq(count_in_set(&g, "snat4", " . 6 . "), 0);
    ck_assert_int_eq(tu_log_count("deleting failed", NULL), 0);
    tn_gw_close(&g);
}
END_TEST

/* Two grants that need the same element (the same client, target and port) share it: the
   first one's removal leaves it for the second, the second's deletes it. */
START_TEST(shared_element_counted)
{
    gw g;
    gw_open(&g);
    const fwx_backend *b = fwx_backend_find("nft");
    void *st = fwx_firewall_backend_state(g.fw);
    fwx_grant g1 = permission(1, TN_SERVER ":6001"), g2 = permission(2, TN_SERVER ":6001");
    TU_EXPECT_HR(b->grant_add(st, &g1), FWX_S_OK);
    TU_EXPECT_HR(b->grant_add(st, &g2), FWX_S_OK);
    ck_assert_int_eq(count_in_set(&g, "once4", " . 6 . 6001"), 1);
    TU_EXPECT_HR(b->grant_remove(st, 1), FWX_S_OK);
    ck_assert(in_set(&g, "once4", TN_CLIENT " . " TN_SERVER " . 6 . 6001"));
    TU_EXPECT_HR(b->grant_remove(st, 2), FWX_S_OK);
    ck_assert(!in_set(&g, "once4", TN_CLIENT " . " TN_SERVER " . 6 . 6001"));
    ck_assert_int_eq(tu_log_count("deleting failed", NULL), 0);
    ck_assert_int_eq(tu_log_count("already gone from the kernel", NULL), 0);
    tn_gw_close(&g);
}
END_TEST

/* 10,000 outstanding grants: all in the kernel, then half removed one by one and half at once
   (a session's end), leaving the sets empty and nothing failed. */
#define MANY 10000
START_TEST(ten_thousand_grants)
{
    gw g;
    gw_open(&g);
    const fwx_backend *b = fwx_backend_find("nft");
    void *st = fwx_firewall_backend_state(g.fw);
    static uint64_t ids[MANY];
    for (int i = 0; i < MANY; i++) {
        char t[64];
        /* Two targets, so that ports stay below 65536; half one-shot, half multiple. */
        snprintf(t, sizeof t, "%s:%d", i % 2 ? TN_SERVER : TN_OTHER, 10000 + i / 2);
        fwx_grant gr = permission((uint64_t)i + 1, t);
        gr.flags = i % 2 ? FWX_FLAG_ALLOW_MULTIPLE : 0;
        ids[i] = gr.id;
        fwx_result hr = b->grant_add(st, &gr);
        ck_assert_msg(hr == FWX_S_OK, "grant %d: %s", i, fwx_err_name(hr));
    }
    ck_assert_int_eq(count_in_set(&g, "once4", " . 6 . "), MANY / 2);
    ck_assert_int_eq(count_in_set(&g, "allow4", " . 6 . "), MANY / 2);
    for (int i = 0; i < MANY / 2; i++)
        TU_EXPECT_HR(b->grant_remove(st, ids[i]), FWX_S_OK);
    TU_EXPECT_HR(b->grant_remove_many(st, ids + MANY / 2, MANY / 2), FWX_S_OK);
    ck_assert_int_eq(count_in_set(&g, "once4", " . 6 . "), 0);
    ck_assert_int_eq(count_in_set(&g, "allow4", " . 6 . "), 0);
    TU_EXPECT_HR(b->grant_remove(st, ids[0]), FWX_E_NOT_FOUND);
    ck_assert_int_eq(tu_log_count("deleting failed", NULL), 0);
    ck_assert_int_eq(tu_log_count("already gone from the kernel", NULL), 0);
    tn_gw_close(&g);
}
END_TEST

static Suite *nft_nl_suite(void)
{
    const tu_case cases[] = {
        {"key encoding", key_encoding},
        {"batch refuses one group", batch_refuses_one_group},
        {"destroy element", destroy_element},
        {"element lookup", element_lookup},
        {"grant refused precisely", grant_refused_precisely},
        {"shared element counted", shared_element_counted},
        {"ten thousand grants", ten_thousand_grants},
    };
    return TU_SUITE("nft netlink", cases, 50);
}

int main(void) { return tn_main(nft_nl_suite, "network namespace tests"); }
