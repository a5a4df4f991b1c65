/*
 * fwx tests - shared helpers.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "util/util.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sockaddr_storage tu_addr(const char *text)
{
    struct sockaddr_storage ss;
    if (!fwx__sa_parse(text, -1, &ss))
        ck_abort_msg("bad test address %s", text);
    return ss;
}

uint32_t tu_len(const struct sockaddr_storage *ss)
{
    return fwx__sa_len((const struct sockaddr *)ss);
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    fprintf(stderr, "leaked libuv handle: type %s\n", uv_handle_type_name(uv_handle_get_type(h)));
}

void tu_loop_close_clean(uv_loop_t *loop)
{
    /* Bounded: each run drains pending close callbacks; a live handle keeps it going. */
    for (int i = 0; i < 100 && uv_run(loop, UV_RUN_NOWAIT) != 0; i++)
        ;
    int rc = uv_loop_close(loop);
    if (rc != 0)
        uv_walk(loop, close_walk_cb, NULL);
    ck_assert_msg(rc == 0, "uv_loop_close: %s (a handle leaked)", uv_strerror(rc));
}

static void stop_cb(uv_timer_t *t)
{
    uv_stop(t->loop);
}

void tu_loop_run_for(uv_loop_t *loop, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, stop_cb, ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

const char *tu_plugin_path(const char *name)
{
    static char buf[4096];
    const char *dir = getenv("FWX_TEST_PLUGIN_DIR");
    snprintf(buf, sizeof buf, "%s/%s.so", dir ? dir : "tests/plugins", name);
    return buf;
}

#define TU_LOG_MAX 1024

static char log_lines[TU_LOG_MAX][512];
static int n_log_lines;
static int n_log_dropped;

void tu_log_capture(void *arg, fwx_log_level level, const char *message)
{
    (void)arg;
    if (getenv("FWX_TEST_LOG") != NULL)
        fprintf(stderr, "[%d] %s\n", (int)level, message);
    if (n_log_lines < TU_LOG_MAX)
        snprintf(log_lines[n_log_lines++], sizeof log_lines[0], "%s", message);
    else
        n_log_dropped++;
}

void tu_log_reset(void)
{
    n_log_lines = 0;
    n_log_dropped = 0;
}

int tu_log_count(const char *a, const char *b)
{
    ck_assert_msg(n_log_dropped == 0, "log capture overflowed (%d lines dropped)", n_log_dropped);
    int n = 0;
    for (int i = 0; i < n_log_lines; i++)
        if (strstr(log_lines[i], a) != NULL && (b == NULL || strstr(log_lines[i], b) != NULL))
            n++;
    return n;
}

const char *tu_log_find(const char *a, const char *b)
{
    ck_assert_msg(n_log_dropped == 0, "log capture overflowed (%d lines dropped)", n_log_dropped);
    for (int i = 0; i < n_log_lines; i++)
        if (strstr(log_lines[i], a) != NULL && (b == NULL || strstr(log_lines[i], b) != NULL))
            return log_lines[i];
    return NULL;
}

int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

Suite *tu_suite(const char *name, const tu_case *cases, size_t n, double timeout_s)
{
    Suite *s = suite_create(name);
    for (size_t i = 0; i < n; i++) {
        TCase *tc = tcase_create(cases[i].name);
        if (timeout_s > 0)
            tcase_set_timeout(tc, timeout_s);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

void tu_fw_options(fwx_firewall_options *o)
{
    fwx_firewall_options_init(o);
    o->log = tu_log_capture;
    o->log_level = FWX_LOG_DEBUG;
    tu_log_reset();
}

void tu_gw_options(fwx_firewall_options *o)
{
    /* Static: the firewall keeps the pointer for its life, past the caller's frame. */
    static struct sockaddr_storage local;
    local = tu_addr("127.0.0.1");
    fwx_firewall_options_init(o);
    o->local_addresses = &local;
    o->n_local_addresses = 1;
    o->loopback_hosts = 1;
    o->port_min = 40000;
    o->port_max = 60999;
    o->log_level = getenv("FWX_TEST_LOG") ? FWX_LOG_DEBUG : FWX_LOG_ERROR;
}

void tu_fw_gateway_addresses(fwx_firewall_options *o)
{
    /* Static: the firewall keeps the pointer for its life, past the caller's frame. */
    static struct sockaddr_storage local[2];
    local[0] = tu_addr("203.0.113.1");
    local[1] = tu_addr("10.0.0.1");
    o->local_addresses = local;
    o->n_local_addresses = 2;
}

void tu_fw_open(uv_loop_t *loop, const fwx_firewall_options *o, fwx_firewall **fw)
{
    ck_assert_int_eq(uv_loop_init(loop), 0);
    TU_EXPECT_HR(fwx_firewall_new(loop, o, fw), FWX_S_OK);
    ck_assert_ptr_nonnull(*fw);
}

void tu_fw_close(uv_loop_t *loop, fwx_firewall **fw)
{
    if (*fw != NULL)
        fwx_firewall_close(*fw, NULL, NULL);
    *fw = NULL;
    tu_loop_close_clean(loop);
}

fwx_policy *tu_policy(const char *text)
{
    fwx_policy *p = NULL;
    fwx_config_error err;
    memset(&err, 0, sizeof err);
    fwx_result hr = fwx_policy_load_string(text, "test policy", &p, &err);
    ck_assert_msg(hr == FWX_S_OK, "%s:%d: %s: %s", err.file, err.line, err.key, err.message);
    return p;
}

void tu_fw_set_policy(fwx_firewall *fw, const char *text)
{
    TU_EXPECT_HR(fwx_firewall_set_policy(fw, tu_policy(text)), FWX_S_OK);
}

const char *tu_publish_policy(uint16_t listen, uint16_t server)
{
    static char text[2048];
    snprintf(text, sizeof text,
             "protocols = ( { name = \"svc\"; guid = \"{0badf00d-0000-0000-0000-000000000001}\"; protocol = \"tcp\";"
             " port = %u; direction = \"inbound\"; } );\n"
             "rules = ( { name = \"publish\"; action = \"allow\"; from = [ \"localhost\" ]; to = [ \"localhost\" ];"
             " protocols = [ \"svc\" ]; } );\n"
             "publishing = ( { name = \"svc\"; listen = \"127.0.0.1:%u\"; server = \"127.0.0.3:%u\";"
             " protocol = \"svc\"; full_proxy = true; } );\n",
             listen, listen, server);
    return text;
}

fwx_firewall_stats tu_fw_stats(fwx_firewall *fw)
{
    fwx_firewall_stats st = {.struct_size = sizeof st};
    TU_EXPECT_HR(fwx_firewall_get_stats(fw, &st), FWX_S_OK);
    return st;
}

tp_control *tu_plugin_map(const char *name, void **handle)
{
    void *h = dlopen(tu_plugin_path(name), RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(h != NULL, "dlopen %s: %s", name, dlerror());
    tp_control *ctl = dlsym(h, "fwx_test_control");
    ck_assert_msg(ctl != NULL, "dlsym fwx_test_control in %s: %s", name, dlerror());
    if (handle != NULL)
        *handle = h;
    return ctl;
}

void tu_plugin_load(fwx_firewall *fw, const char *name)
{
    TU_EXPECT_HR(fwx_firewall_load_plugin(fw, tu_plugin_path(name), NULL), FWX_S_OK);
}

IFWXSession *tu_session_open(fwx_firewall *fw, uint32_t source, const char *client, const char *gw_inside)
{
    struct sockaddr_storage c = tu_addr(client), gi;
    fwx_session_params sp = {.struct_size = sizeof sp, .source = source, .client = TU_SA(c), .client_len = tu_len(&c)};
    if (gw_inside != NULL) {
        gi = tu_addr(gw_inside);
        sp.gateway_internal = TU_SA(gi);
        sp.gateway_internal_len = tu_len(&gi);
    }
    IFWXSession *s = NULL;
    TU_EXPECT_HR(fwx_session_open(fw, &sp, &s), FWX_S_OK);
    ck_assert_ptr_nonnull(s);
    return s;
}

void tu_sockets_close(IFWXSocket *s[2], bool *closed)
{
    if (*closed)
        return;
    *closed = true;
    for (int i = 0; i < 2; i++)
        if (s[i] != NULL)
            IFWXSocket_Close(s[i]);
}

void tu_sockets_take(IFWXSocket *s[2], IFWXSocket *in, IFWXSocket *ex)
{
    s[0] = in;
    s[1] = ex;
    for (int i = 0; i < 2; i++)
        if (s[i] != NULL)
            IFWXSocket_AddRef(s[i]);
}

void tu_sockets_release(IFWXSocket *s[2], int close_them)
{
    for (int i = 0; i < 2; i++)
        if (s[i] != NULL) {
            if (close_them)
                IFWXSocket_Close(s[i]); /* the socket contract: a filter closes what it got */
            IFWXSocket_Release(s[i]);
            s[i] = NULL;
        }
}
