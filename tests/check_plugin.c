/*
 * fwx tests - the plugin host: loading real .so plugins, refusing bad ones, session filters,
 * hook sources and the manifest, unloading and shutdown order, and two firewalls on two threads
 * (each on its own loop) whose grants go to their own plugins.
 *
 * The plugins are built by tests/plugins (tp_good, tp_good2, tp_newer, tp_nosym, tp_failinit).
 * A test reaches a plugin's control block (fwx_test_control) through its own dlopen handle of
 * the same file: opened before fwx loads it when FilterInit must see the hooks, otherwise with
 * RTLD_NOLOAD afterwards. The extra handle also keeps the control block mapped after
 * fwx_firewall_close() has dlclosed the plugin, so that shutdown can still be checked.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "plugins/test_plugin.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- environment: a loop, a firewall and its captured log ------------------------------ */

static uv_loop_t loop;
static fwx_firewall *fw;

static void env_open(void)
{
    fwx_firewall_options o;
    tu_fw_options(&o);
    tu_fw_open(&loop, &o, &fw);
}

static void env_close(void) { tu_fw_close(&loop, &fw); }

static fwx_firewall_stats stats(void) { return tu_fw_stats(fw); }

/* ---- test plugins -------------------------------------------------------------------- */

/* The control block of a plugin fwx has already loaded. */
static tp_control *tp_attached(const char *name, void **handle)
{
    *handle = dlopen(tu_plugin_path(name), RTLD_NOW | RTLD_NOLOAD);
    ck_assert_msg(*handle != NULL, "%s is not loaded: %s", name, dlerror());
    tp_control *ctl = dlsym(*handle, "fwx_test_control");
    ck_assert_ptr_nonnull(ctl);
    return ctl;
}

/* Maps tp_good, sets its hooks, loads it into fw and checks the load. */
static tp_control *load_good(uint32_t hooks, void **handle, fwx_plugin **out)
{
    tp_control *ctl = tu_plugin_map("tp_good", handle);
    ctl->hooks = hooks;
    fwx_plugin *p = NULL;
    TU_EXPECT_HR(fwx_firewall_load_plugin(fw, tu_plugin_path("tp_good"), &p), FWX_S_OK);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(ctl->n_init, 1);
    if (out != NULL)
        *out = p;
    return ctl;
}

/* The environment with tp_good loaded (load_good) hooking `hooks`: its control block, and its
   dlopen handle in *handle. */
static tp_control *env_open_good(uint32_t hooks, void **handle)
{
    env_open();
    return load_good(hooks, handle, NULL);
}

/* The environment closed, then the test's own mapping of the plugin (handle) dropped. */
static void env_close_plugin(void *handle)
{
    env_close();
    dlclose(handle);
}

/* A test's end with one session of ours left: released, then env_close_plugin. */
static void session_done(IFWXSession *s, void *handle)
{
    IFWXSession_Release(s);
    env_close_plugin(handle);
}

/* The end of a test with a NAT and a WSP session, each with a connection of ours: both
   connections closed, both sessions released, then env_close_plugin. */
static void nat_wsp_done(IFWXSession *nat, IFWXConnection *c1, IFWXSession *wsp, IFWXConnection *c2, void *handle)
{
    fwx_connection_close(c1);
    fwx_connection_close(c2);
    IFWXSession_Release(nat);
    IFWXSession_Release(wsp);
    env_close_plugin(handle);
}

/* ---- sessions and connections -------------------------------------------------------- */

static IFWXSession *open_session(uint32_t source, const char *client)
{
    struct sockaddr_storage c = tu_addr(client);
    fwx_session_params sp = {
        .struct_size = sizeof sp, .source = source, .client = TU_SA(c), .client_len = tu_len(&c)};
    IFWXSession *s = NULL;
    TU_EXPECT_HR(fwx_session_open(fw, &sp, &s), FWX_S_OK);
    ck_assert_ptr_nonnull(s);
    TU_EXPECT_REF(s, 2); /* ours and the firewall's list */
    return s;
}

/* fwx_connection_open for `event` (fwx_Connect_Tcp or fwx_Udp_Destination) to `peer`. */
static fwx_result open_conn_ev(IFWXSession *s, uint32_t event, const char *peer, IFWXConnection **out)
{
    struct sockaddr_storage p = tu_addr(peer);
    fwx_connection_params cp = {
        .struct_size = sizeof cp,
        .event = event,
        .protocol = event == fwx_Udp_Destination ? FWX_PROTOCOL_UDP : FWX_PROTOCOL_TCP,
        .external_peer = TU_SA(p),
        .external_peer_len = tu_len(&p),
    };
    return fwx_connection_open(s, &cp, out);
}

static IFWXConnection *open_conn(IFWXSession *s, uint32_t event, const char *peer)
{
    IFWXConnection *c = (IFWXConnection *)(uintptr_t)1;
    TU_EXPECT_HR(open_conn_ev(s, event, peer, &c), FWX_S_OK);
    ck_assert_ptr_nonnull(c);
    TU_EXPECT_REF(c, 2); /* ours and the session's list */
    return c;
}

static int count_log(const tp_control *ctl, uint32_t what)
{
    int n = 0;
    for (int i = 0; i < ctl->n_log; i++)
        if (ctl->log[i] == what)
            n++;
    return n;
}

static int index_in_log(const tp_control *ctl, uint32_t what)
{
    for (int i = 0; i < ctl->n_log; i++)
        if (ctl->log[i] == what)
            return i;
    return -1;
}

/* A loaded tp_good (hooking fwx_Connect_Tcp from NAT) still receives events: a fresh NAT
   session and a connect reach it. */
static void expect_good_still_works(tp_control *ctl, const char *client)
{
    int events = ctl->n_events, attach = ctl->n_attach;
    IFWXSession *s = open_session(fwxSourceNAT, client);
    IFWXConnection *c = open_conn(s, fwx_Connect_Tcp, "198.51.100.7:80");
    ck_assert_int_eq(ctl->n_attach, attach + 1);
    ck_assert_int_eq(ctl->n_events, events + 1);
    ck_assert_uint_eq(ctl->log[ctl->n_log - 1], fwx_Connect_Tcp);
    fwx_connection_close(c);
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    TU_EXPECT_REF(s, 1);
    IFWXSession_Release(s);
}

#define HOOK_CONNECT (fwx_Connect_Tcp | FWX_ALL_SOURCES)

/* ---- loading ---------------------------------------------------------------------------- */

START_TEST(load_good_once)
{
    void *h;
    env_open();
    IFWXFirewall *ifw = fwx_firewall_iface(fw);
    TU_EXPECT_REF(ifw, 1);
    fwx_plugin *p = NULL;
    tp_control *ctl = load_good(HOOK_CONNECT, &h, &p);
    ck_assert_int_eq(ctl->n_init, 1);
    ck_assert_ptr_eq(ctl->fw, ifw); /* FilterInit got the firewall and kept a reference */
    TU_EXPECT_REF(ifw, 2);
    const fwx_plugin_entry *e = fwx_plugin_info(p);
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->name, "good");
    ck_assert_uint_eq(stats().plugins, 1);
    ck_assert_ptr_eq(fwx_firewall_find_plugin(fw, &e->filter_guid), p);
    ck_assert_int_eq(tu_log_count("plugin \"good\": loaded", NULL), 1);

    /* The same path again: the same plugin, FWX_S_FALSE, no second FilterInit. */
    fwx_plugin *again = NULL;
    TU_EXPECT_HR(fwx_firewall_load_plugin(fw, tu_plugin_path("tp_good"), &again), FWX_S_FALSE);
    ck_assert_ptr_eq(again, p);
    ck_assert_int_eq(ctl->n_init, 1);
    ck_assert_uint_eq(stats().plugins, 1);
    TU_EXPECT_REF(ifw, 2);

    env_close();
    ck_assert_int_eq(ctl->n_shutdown, 1);
    ck_assert_ptr_null(ctl->fw);
    dlclose(h);
}
END_TEST

/* A refused plugin leaves tp_good loaded, counted once and receiving events. */
static void refused(const char *name, fwx_result want, const char *msg1, const char *msg2)
{
    void *h;
    tp_control *ctl = env_open_good(fwx_Connect_Tcp | fwxSourceNAT, &h);
    ck_assert_uint_eq(stats().plugins, 1);
    fwx_plugin *p = (fwx_plugin *)(uintptr_t)1;
    const char *path = name[0] == '/' ? name : tu_plugin_path(name);
    TU_EXPECT_HR(fwx_firewall_load_plugin(fw, path, &p), want);
    ck_assert_ptr_null(p);
    const char *err = fwx_firewall_last_error(fw);
    ck_assert_msg(strstr(err, msg1) != NULL, "last error \"%s\" lacks \"%s\"", err, msg1);
    ck_assert_msg(msg2 == NULL || strstr(err, msg2) != NULL, "last error \"%s\" lacks \"%s\"", err, msg2);
    ck_assert_msg(tu_log_count(msg1, "not loading") == 1, "no log line with \"%s\"", msg1);
    ck_assert_uint_eq(stats().plugins, 1);
    expect_good_still_works(ctl, "10.0.0.8");
    ck_assert_int_eq(ctl->n_init, 1);
    env_close_plugin(h);
}

START_TEST(refuse_newer_abi)
{
    /* tp_newer is built with FWX_ABI_VERSION + 1: one minor ahead of the host. */
    char want[32];
    snprintf(want, sizeof want, "abi %d.%d", FWX_ABI_VERSION_MAJOR, FWX_ABI_VERSION_MINOR + 1);
    refused("tp_newer", FWX_E_ABI_MISMATCH, "newer than host", want);
}
END_TEST

START_TEST(refuse_no_symbol)
{
    refused("tp_nosym", FWX_E_PLUGIN_LOAD, "no symbol", FWX_PLUGIN_ENTRY_SYMBOL);
}
END_TEST

START_TEST(refuse_failing_init)
{
    refused("tp_failinit", FWX_E_PLUGIN_INIT, "init failed", NULL);
}
END_TEST

START_TEST(refuse_missing_file)
{
    refused("/nonexistent/fwx-test/no-such-plugin.so", FWX_E_PLUGIN_LOAD, "no-such-plugin.so", NULL);
}
END_TEST

/* ---- plugin directories and duplicate GUIDs ------------------------------------------- */

static char tmpdir[256];

static void tmpdir_make(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fwx-check-plugin-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmpdir_link(const char *plugin, const char *as)
{
    char to[512], target[4096];
    snprintf(target, sizeof target, "%s", tu_plugin_path(plugin));
    if (target[0] != '/') {
        char cwd[2048];
        ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
        snprintf(target, sizeof target, "%s/%s", cwd, tu_plugin_path(plugin));
    }
    snprintf(to, sizeof to, "%s/%s", tmpdir, as);
    ck_assert_msg(symlink(target, to) == 0, "symlink %s: %s", to, strerror(errno));
}

static void tmpdir_copy(const char *plugin, const char *as)
{
    char to[512];
    snprintf(to, sizeof to, "%s/%s", tmpdir, as);
    FILE *in = fopen(tu_plugin_path(plugin), "rb"), *out = fopen(to, "wb");
    ck_assert_ptr_nonnull(in);
    ck_assert_ptr_nonnull(out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    ck_assert_int_eq(fclose(out), 0);
}

static void tmpdir_remove(const char *const names[])
{
    char p[512];
    for (int i = 0; names[i] != NULL; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]);
        unlink(p);
    }
    ck_assert_int_eq(rmdir(tmpdir), 0);
}

START_TEST(load_dir)
{
    static const char *const names[] = {"a_good.so", "b_good2.so", "c_newer.so", "readme.txt", NULL};
    tmpdir_make();
    tmpdir_link("tp_good", names[0]);
    tmpdir_link("tp_good2", names[1]);
    tmpdir_link("tp_newer", names[2]);
    tmpdir_link("tp_nosym", names[3]); /* not *.so: never tried */
    env_open();
    unsigned n = 99;
    TU_EXPECT_HR(fwx_firewall_load_plugin_dir(fw, tmpdir, &n), FWX_S_FALSE);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(stats().plugins, 2);
    ck_assert_int_eq(tu_log_count("tp_newer.so", "newer than host"), 1); /* named by its real path */
    ck_assert_int_eq(tu_log_count("nosym", NULL), 0);

    /* Loaded through a link, the plugin is the file itself: its real path is already loaded. */
    TU_EXPECT_HR(fwx_firewall_load_plugin(fw, tu_plugin_path("tp_good"), NULL), FWX_S_FALSE);

    /* Again: nothing new loads, the newer one still fails. */
    n = 99;
    TU_EXPECT_HR(fwx_firewall_load_plugin_dir(fw, tmpdir, &n), FWX_S_FALSE);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(stats().plugins, 2);

    n = 99;
    TU_EXPECT_HR(fwx_firewall_load_plugin_dir(fw, "/nonexistent/fwx-test-dir", &n), FWX_E_NOT_FOUND);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_nonnull(strstr(fwx_firewall_last_error(fw), "/nonexistent/fwx-test-dir"));
    ck_assert_uint_eq(stats().plugins, 2);
    env_close();
    tmpdir_remove(names);
}
END_TEST

START_TEST(load_dir_all_good)
{
    static const char *const names[] = {"a_good.so", "b_good2.so", NULL};
    tmpdir_make();
    tmpdir_link("tp_good", names[0]);
    tmpdir_link("tp_good2", names[1]);
    env_open();
    unsigned n = 99;
    TU_EXPECT_HR(fwx_firewall_load_plugin_dir(fw, tmpdir, &n), FWX_S_OK);
    ck_assert_uint_eq(n, 2);
    env_close();
    tmpdir_remove(names);
}
END_TEST

START_TEST(duplicate_guid)
{
    static const char *const names[] = {"copy_of_good.so", NULL};
    void *h;
    tmpdir_make();
    tmpdir_copy("tp_good", names[0]);
    tp_control *ctl = env_open_good(fwx_Connect_Tcp | fwxSourceNAT, &h);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, names[0]);
    fwx_plugin *p = (fwx_plugin *)(uintptr_t)1;
    TU_EXPECT_HR(fwx_firewall_load_plugin(fw, path, &p), FWX_E_ALREADY_EXISTS_WIN32);
    ck_assert_ptr_null(p);
    ck_assert_ptr_nonnull(strstr(fwx_firewall_last_error(fw), "guid"));
    ck_assert_ptr_nonnull(strstr(fwx_firewall_last_error(fw), "good"));
    ck_assert_uint_eq(stats().plugins, 1);
    expect_good_still_works(ctl, "10.0.0.8");
    env_close_plugin(h);
    tmpdir_remove(names);
}
END_TEST

/* ---- AttachToSession ---------------------------------------------------------------------- */

START_TEST(attach_once_per_session)
{
    void *h;
    tp_control *ctl = env_open_good(HOOK_CONNECT, &h);
    IFWXSession *s = open_session(fwxSourceNAT, "10.0.0.8");
    ck_assert_int_eq(ctl->n_attach, 0); /* not at session open: at the first hooked event */

    IFWXConnection *u = open_conn(s, fwx_Udp_Destination, "198.51.100.7:53");
    ck_assert_int_eq(ctl->n_attach, 0); /* an event it does not hook */
    ck_assert_int_eq(ctl->n_events, 0);

    IFWXConnection *c1 = open_conn(s, fwx_Connect_Tcp, "198.51.100.7:80");
    ck_assert_int_eq(ctl->n_attach, 1);
    ck_assert_int_eq(count_log(ctl, fwx_Connect_Tcp), 1);
    IFWXConnection *c2 = open_conn(s, fwx_Connect_Tcp, "198.51.100.8:80");
    ck_assert_int_eq(ctl->n_attach, 1);
    ck_assert_int_eq(count_log(ctl, fwx_Connect_Tcp), 2);

    /* A second session gets its own session filter. */
    IFWXSession *s2 = open_session(fwxSourceNAT, "10.0.0.9");
    IFWXConnection *c3 = open_conn(s2, fwx_Connect_Tcp, "198.51.100.7:80");
    ck_assert_int_eq(ctl->n_attach, 2);
    ck_assert_int_eq(count_log(ctl, fwx_Connect_Tcp), 3);

    fwx_connection_close(u);
    fwx_connection_close(c1);
    fwx_connection_close(c2);
    fwx_connection_close(c3);
    ck_assert_int_eq(ctl->n_terminating, 4); /* ConnectionTerminating needs no hook */
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    TU_EXPECT_HR(fwx_session_close(s2), FWX_S_OK);
    ck_assert_int_eq(ctl->n_detach, 2);
    ck_assert_int_eq(ctl->n_sf_released, 2);
    IFWXSession_Release(s);
    IFWXSession_Release(s2);
    ck_assert_uint_eq(stats().connections, 0);
    env_close_plugin(h);
}
END_TEST

START_TEST(attach_forced_by_attachfilter)
{
    void *h;
    env_open();
    fwx_plugin *p;
    tp_control *ctl = load_good(HOOK_CONNECT, &h, &p);
    IFWXSession *s = open_session(fwxSourceNAT, "10.0.0.8");
    TU_EXPECT_HR(IFWXSession_AttachFilter(s, &fwx_plugin_info(p)->filter_guid), FWX_S_OK);
    ck_assert_int_eq(ctl->n_attach, 1);
    TU_EXPECT_HR(IFWXSession_AttachFilter(s, &fwx_plugin_info(p)->filter_guid), FWX_S_OK);
    IFWXConnection *c = open_conn(s, fwx_Connect_Tcp, "198.51.100.7:80");
    ck_assert_int_eq(ctl->n_attach, 1);
    ck_assert_int_eq(count_log(ctl, fwx_Connect_Tcp), 1);
    fwx_connection_close(c);
    session_done(s, h);
}
END_TEST

START_TEST(session_hooks_narrow)
{
    void *h;
    tp_control *ctl = env_open_good(fwx_Connect_Tcp | fwx_Udp_Destination | FWX_ALL_SOURCES, &h);
    ctl->session_hooks = fwx_Udp_Destination | FWX_ALL_SOURCES;
    IFWXSession *s = open_session(fwxSourceNAT, "10.0.0.8");
    /* The connect makes the filter attach, but the session filter no longer wants connects. */
    IFWXConnection *c1 = open_conn(s, fwx_Connect_Tcp, "198.51.100.7:80");
    ck_assert_int_eq(ctl->n_attach, 1);
    ck_assert_int_eq(ctl->n_events, 0);
    IFWXConnection *u = open_conn(s, fwx_Udp_Destination, "198.51.100.7:53");
    ck_assert_int_eq(count_log(ctl, fwx_Udp_Destination), 1);
    IFWXConnection *c2 = open_conn(s, fwx_Connect_Tcp, "198.51.100.7:81");
    ck_assert_int_eq(count_log(ctl, fwx_Connect_Tcp), 0);
    ck_assert_int_eq(ctl->n_attach, 1);
    /* Another session narrows the same way. */
    IFWXSession *s2 = open_session(fwxSourceNAT, "10.0.0.9");
    IFWXConnection *c3 = open_conn(s2, fwx_Connect_Tcp, "198.51.100.7:80");
    ck_assert_int_eq(ctl->n_attach, 2);
    ck_assert_int_eq(count_log(ctl, fwx_Connect_Tcp), 0);
    fwx_connection_close(c1);
    fwx_connection_close(c2);
    fwx_connection_close(c3);
    fwx_connection_close(u);
    IFWXSession_Release(s);
    IFWXSession_Release(s2);
    env_close_plugin(h);
}
END_TEST

START_TEST(session_hooks_widen)
{
    void *h;
    tp_control *ctl = env_open_good(HOOK_CONNECT, &h);
    ctl->session_hooks = fwx_Connect_Tcp | fwx_Udp_Destination | FWX_ALL_SOURCES;
    IFWXSession *s = open_session(fwxSourceNAT, "10.0.0.8");
    /* Before the filter is attached, UDP does not reach it (FilterInit did not hook it). */
    IFWXConnection *u1 = open_conn(s, fwx_Udp_Destination, "198.51.100.7:53");
    ck_assert_int_eq(ctl->n_attach, 0);
    IFWXConnection *c = open_conn(s, fwx_Connect_Tcp, "198.51.100.7:80");
    ck_assert_int_eq(ctl->n_attach, 1);
    ck_assert_int_eq(count_log(ctl, fwx_Connect_Tcp), 1);
    /* Once attached, the session filter's wider set applies. */
    IFWXConnection *u2 = open_conn(s, fwx_Udp_Destination, "198.51.100.7:54");
    ck_assert_int_eq(count_log(ctl, fwx_Udp_Destination), 1);
    fwx_connection_close(u1);
    fwx_connection_close(u2);
    fwx_connection_close(c);
    session_done(s, h);
}
END_TEST

START_TEST(attach_decline)
{
    void *h;
    tp_control *ctl = env_open_good(HOOK_CONNECT, &h);
    ctl->attach_decline = 1;
    IFWXSession *s = open_session(fwxSourceNAT, "10.0.0.8");
    IFWXConnection *c1 = open_conn(s, fwx_Connect_Tcp, "198.51.100.7:80");
    IFWXConnection *c2 = open_conn(s, fwx_Connect_Tcp, "198.51.100.7:81");
    ck_assert_int_eq(ctl->n_attach, 1); /* asked once; the answer "no" is kept */
    ck_assert_int_eq(ctl->n_events, 0);
    fwx_connection_close(c1);
    fwx_connection_close(c2);
    ck_assert_int_eq(ctl->n_events, 0);
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    ck_assert_int_eq(ctl->n_detach, 0);
    IFWXSession_Release(s);
    env_close_plugin(h);
}
END_TEST

START_TEST(attach_fail)
{
    void *h;
    tp_control *ctl = env_open_good(HOOK_CONNECT, &h);
    ctl->attach_fail = 1;
    IFWXSession *s = open_session(fwxSourceNAT, "10.0.0.8");
    uint32_t before = stats().connections;
    IFWXConnection *c = (IFWXConnection *)(uintptr_t)1;
    TU_EXPECT_HR(open_conn_ev(s, fwx_Connect_Tcp, "198.51.100.7:80", &c), FWX_E_OUTOFMEMORY);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(ctl->n_attach, 1);
    ck_assert_int_eq(ctl->n_events, 0);
    ck_assert_uint_eq(stats().connections, before);
    ck_assert_int_eq(tu_log_count("AttachToSession failed", NULL), 1);
    TU_EXPECT_REF(s, 2);
    /* It is asked again next time, and may then succeed. */
    ctl->attach_fail = 0;
    c = open_conn(s, fwx_Connect_Tcp, "198.51.100.7:80");
    ck_assert_int_eq(ctl->n_attach, 2);
    ck_assert_int_eq(count_log(ctl, fwx_Connect_Tcp), 1);
    fwx_connection_close(c);
    session_done(s, h);
}
END_TEST

/* ---- hook sources and the manifest ------------------------------------------------------ */

START_TEST(hook_source_wsp_only)
{
    void *h;
    tp_control *ctl = env_open_good(fwx_Connect_Tcp | fwxSourceWSP, &h);
    IFWXSession *nat = open_session(fwxSourceNAT, "10.0.0.8");
    IFWXConnection *c1 = open_conn(nat, fwx_Connect_Tcp, "198.51.100.7:80");
    ck_assert_int_eq(ctl->n_attach, 0);
    ck_assert_int_eq(ctl->n_events, 0);
    IFWXSession *wsp = open_session(fwxSourceWSP, "10.0.0.9");
    IFWXConnection *c2 = open_conn(wsp, fwx_Connect_Tcp, "198.51.100.7:80");
    ck_assert_int_eq(ctl->n_attach, 1);
    ck_assert_int_eq(count_log(ctl, fwx_Connect_Tcp), 1);
    nat_wsp_done(nat, c1, wsp, c2, h);
}
END_TEST

START_TEST(hook_source_none)
{
    /* Event types without any source: nothing arrives from either kind of session. */
    void *h;
    tp_control *ctl = env_open_good(fwx_Connect_Tcp, &h);
    IFWXSession *nat = open_session(fwxSourceNAT, "10.0.0.8");
    IFWXSession *wsp = open_session(fwxSourceWSP, "10.0.0.9");
    IFWXConnection *c1 = open_conn(nat, fwx_Connect_Tcp, "198.51.100.7:80");
    IFWXConnection *c2 = open_conn(wsp, fwx_Connect_Tcp, "198.51.100.7:80");
    ck_assert_int_eq(ctl->n_attach, 0);
    ck_assert_int_eq(ctl->n_events, 0);
    nat_wsp_done(nat, c1, wsp, c2, h);
}
END_TEST

START_TEST(manifest_masks_hooks)
{
    void *h;
    tp_control *ctl = env_open_good(HOOK_CONNECT | fwx_GetHostByName, &h);
    ck_assert_int_eq(tu_log_count("plugin \"good\"", "outside its manifest"), 1);
    ck_assert_int_eq(tu_log_count("outside its manifest", "0x00000040"), 1);
    /* The loaded line reports the hooks kept: the connect hook survives, the lookup does not. */
    char kept[64];
    snprintf(kept, sizeof kept, "hooks 0x%08x", (unsigned)HOOK_CONNECT);
    ck_assert_int_eq(tu_log_count("plugin \"good\": loaded", kept), 1);
    IFWXSession *s = open_session(fwxSourceNAT, "10.0.0.8");
    IFWXConnection *c = open_conn(s, fwx_Connect_Tcp, "198.51.100.7:80");
    ck_assert_int_eq(count_log(ctl, fwx_Connect_Tcp), 1);
    fwx_connection_close(c);
    session_done(s, h);
}
END_TEST

START_TEST(manifest_quiet_when_inside)
{
    void *h;
    env_open();
    load_good(HOOK_CONNECT | fwxAnyProtocol, &h, NULL);
    ck_assert_int_eq(tu_log_count("outside its manifest", NULL), 0);
    env_close_plugin(h);
}
END_TEST

/* ---- unloading -------------------------------------------------------------------------- */

static fwx_result afc_result;
static int afc_calls;

/* From the connect handler: allow a future connection anywhere (ALLOW_ADDRESSES_ALL). */
static fwx_result allow_from_handler(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *session,
                                     const FwxFirewallEvent *ev)
{
    (void)ctl;
    if (ev->EventType != fwx_Connect_Tcp || afc_calls > 0)
        return FWX_S_OK;
    afc_calls++;
    struct sockaddr_storage t = tu_addr("198.51.100.7:2000");
    afc_result = IFWXSession_AllowFutureConnect(session, TU_SA(t), tu_len(&t), NULL, 0, FWX_PROTOCOL_TCP,
                                                FWX_FLAG_ALLOW_ADDRESSES_ALL, NULL, sf, NULL, NULL, NULL);
    return FWX_S_OK;
}

START_TEST(unload)
{
    void *h;
    env_open();
    fwx_plugin *p;
    IFWXFirewall *ifw = fwx_firewall_iface(fw);
    tp_control *ctl = load_good(HOOK_CONNECT, &h, &p);
    ctl->on_event = allow_from_handler;
    TU_EXPECT_REF(ifw, 2);
    IFWXSession *s = open_session(fwxSourceNAT, "10.0.0.8");
    IFWXConnection *c = open_conn(s, fwx_Connect_Tcp, "198.51.100.7:21");
    ck_assert_int_eq(afc_calls, 1);
    TU_EXPECT_HR(afc_result, FWX_S_OK);
    ck_assert_uint_eq(stats().permissions, 1);
    ck_assert_int_eq(ctl->n_attach, 1);

    TU_EXPECT_HR(fwx_plugin_unload(p), FWX_S_OK);
    ck_assert_int_eq(ctl->n_shutdown, 1);
    ck_assert_int_eq(ctl->n_detach, 1);
    int shut = index_in_log(ctl, TP_LOG_SHUTDOWN), det = index_in_log(ctl, TP_LOG_DETACH);
    ck_assert_int_ge(shut, 0);
    ck_assert_int_gt(det, shut); /* FilterShutdown, then Detach */
    ck_assert_int_eq(ctl->n_sf_released, 1);
    ck_assert_ptr_null(ctl->fw);
    TU_EXPECT_REF(ifw, 1);                       /* the filter's IFWXFirewall reference is gone */
    ck_assert_uint_eq(stats().permissions, 0);   /* its permission was withdrawn */
    ck_assert_ptr_null(fwx_firewall_find_plugin(fw, &fwx_plugin_info(p)->filter_guid));
    TU_EXPECT_REF(s, 3); /* ours, the list's, the connection's: the session filter's went at Detach */

    /* No further events: not for the live connection's end, not for new connections or sessions. */
    int events = ctl->n_events, log_n = ctl->n_log;
    fwx_connection_close(c);
    IFWXConnection *c2 = open_conn(s, fwx_Connect_Tcp, "198.51.100.7:80");
    IFWXSession *s2 = open_session(fwxSourceNAT, "10.0.0.9");
    IFWXConnection *c3 = open_conn(s2, fwx_Connect_Tcp, "198.51.100.7:80");
    fwx_connection_close(c2);
    fwx_connection_close(c3);
    ck_assert_int_eq(ctl->n_events, events);
    ck_assert_int_eq(ctl->n_log, log_n);
    ck_assert_int_eq(ctl->n_after_detach, 0);
    ck_assert_int_eq(ctl->n_attach, 1);
    ck_assert_int_eq(afc_calls, 1);

    /* Unloading twice is harmless. */
    TU_EXPECT_HR(fwx_plugin_unload(p), FWX_S_OK);
    ck_assert_int_eq(ctl->n_shutdown, 1);
    TU_EXPECT_HR(fwx_plugin_unload(NULL), FWX_E_POINTER);

    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK);
    TU_EXPECT_HR(fwx_session_close(s2), FWX_S_OK);
    ck_assert_int_eq(ctl->n_detach, 1);
    IFWXSession_Release(s);
    IFWXSession_Release(s2);
    env_close();
    ck_assert_int_eq(ctl->n_shutdown, 1);
    dlclose(h);
}
END_TEST


static IFWXConnection *bound[1];
static fwx_result bind_result;

/* From the connect handler: bind one port for the client (as an FTP filter does for PORT). */
static fwx_result bind_from_handler(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *session,
                                    const FwxFirewallEvent *ev)
{
    (void)ctl;
    if (ev->EventType != fwx_Connect_Tcp || bound[0] != NULL)
        return FWX_S_OK;
    struct sockaddr_storage ca = tu_addr("10.0.0.8:1024"), proxy = tu_addr("0.0.0.0:0");
    const struct sockaddr *cap[1] = {TU_SA(ca)};
    bind_result = IFWXSession_BindForClient(session, cap, tu_len(&ca), TU_SAM(proxy), tu_len(&proxy), FWX_PROTOCOL_TCP,
                                            1, 0, 5, NULL, sf, NULL, NULL, bound);
    return FWX_S_OK;
}

START_TEST(unload_withdraws_bound_ports)
{
    void *h;
    env_open();
    fwx_plugin *p;
    tp_control *ctl = load_good(HOOK_CONNECT, &h, &p);
    ctl->on_event = bind_from_handler;
    IFWXSession *s = open_session(fwxSourceNAT, "10.0.0.8");
    IFWXConnection *c = open_conn(s, fwx_Connect_Tcp, "198.51.100.7:21");
    TU_EXPECT_HR(bind_result, FWX_S_OK);
    ck_assert_ptr_nonnull(bound[0]);
    ck_assert_uint_eq(stats().bound_ports, 1);
    TU_EXPECT_HR(fwx_plugin_unload(p), FWX_S_OK);
    ck_assert_uint_eq(stats().bound_ports, 0);
    ck_assert_int_eq(ctl->n_sf_released, 1); /* the grant's reference on the session filter went too */
    /* The port is free: nothing is admitted to it any more. */
    struct sockaddr_storage local;
    uint32_t len = sizeof local;
    TU_EXPECT_HR(IFWXConnection_GetExternalSocketName(bound[0], TU_SAM(local), &len), FWX_S_OK);
    struct sockaddr_storage src = tu_addr("198.51.100.7:20");
    fwx_flow flow = {.struct_size = sizeof flow, .protocol = FWX_PROTOCOL_TCP, .source = TU_SA(src),
                     .source_len = tu_len(&src), .destination = TU_SA(local), .destination_len = len};
    IFWXConnection *sec = (IFWXConnection *)(uintptr_t)1;
    TU_EXPECT_HR(fwx_firewall_admit(fw, &flow, &sec), FWX_E_NOT_FOUND);
    ck_assert_ptr_null(sec);
    fwx_connection_close(bound[0]);
    fwx_connection_close(c);
    session_done(s, h);
}
END_TEST

START_TEST(unload_then_reload_path)
{
    /* After an unload the path is free again: a fresh load runs FilterInit again. */
    void *h;
    env_open();
    fwx_plugin *p;
    tp_control *ctl = load_good(HOOK_CONNECT, &h, &p);
    TU_EXPECT_HR(fwx_plugin_unload(p), FWX_S_OK);
    fwx_plugin *q = NULL;
    TU_EXPECT_HR(fwx_firewall_load_plugin(fw, tu_plugin_path("tp_good"), &q), FWX_S_OK);
    ck_assert_ptr_nonnull(q);
    ck_assert_ptr_ne(q, p);
    ck_assert_int_eq(ctl->n_init, 2);
    expect_good_still_works(ctl, "10.0.0.8");
    env_close();
    ck_assert_int_eq(ctl->n_shutdown, 2);
    dlclose(h);
}
END_TEST

/* ---- firewall close ------------------------------------------------------------------- */

START_TEST(close_with_live_session)
{
    void *h;
    tp_control *ctl = env_open_good(HOOK_CONNECT, &h);
    IFWXSession *s = open_session(fwxSourceNAT, "10.0.0.8");
    IFWXConnection *c = open_conn(s, fwx_Connect_Tcp, "198.51.100.7:80");
    ck_assert_int_eq(ctl->n_attach, 1);

    fwx_firewall_close(fw, NULL, NULL);
    ck_assert_int_eq(ctl->n_terminating, 1);
    ck_assert_int_eq(ctl->n_detach, 1);
    ck_assert_int_eq(ctl->n_shutdown, 1);
    int det = index_in_log(ctl, TP_LOG_DETACH), shut = index_in_log(ctl, TP_LOG_SHUTDOWN);
    ck_assert_int_ge(det, 0);
    ck_assert_int_gt(shut, det); /* sessions end first, then the filters shut down */
    ck_assert_ptr_null(ctl->fw);
    ck_assert_int_eq(ctl->n_sf_released, 1);
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXSession_GetSessionFlags(s, &flags), FWX_S_OK);
    ck_assert(flags & FWX_SESSION_TERMINATED);
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_FALSE);
    /* Our references are still valid until the loop runs the close. */
    TU_EXPECT_REF(c, 1);
    TU_EXPECT_REF(s, 2); /* ours and the connection's */
    fwx_connection_close(c);
    TU_EXPECT_REF(s, 1);
    IFWXSession_Release(s);
    fw = NULL;
    tu_loop_close_clean(&loop);
    dlclose(h);
}
END_TEST

static int close_cb_calls;
static void on_closed(fwx_firewall *f, void *arg)
{
    (void)f;
    ck_assert_ptr_eq(arg, &close_cb_calls);
    close_cb_calls++;
}

START_TEST(close_twice_and_callback)
{
    void *h;
    tp_control *ctl = env_open_good(HOOK_CONNECT, &h);
    fwx_firewall_close(fw, on_closed, &close_cb_calls);
    fwx_firewall_close(fw, on_closed, &close_cb_calls); /* harmless */
    ck_assert_int_eq(ctl->n_shutdown, 1);
    ck_assert_int_eq(close_cb_calls, 0); /* only once the loop has closed the handles */
    fw = NULL;
    tu_loop_close_clean(&loop);
    ck_assert_int_eq(close_cb_calls, 1);
    dlclose(h);
}
END_TEST

START_TEST(load_after_close_starts)
{
    env_open();
    fwx_firewall_close(fw, NULL, NULL);
    TU_EXPECT_HR(fwx_firewall_load_plugin(fw, tu_plugin_path("tp_good"), NULL), FWX_E_TERMINATING);
    fw = NULL;
    tu_loop_close_clean(&loop);
}
END_TEST

START_TEST(control_block_after_load)
{
    /* The RTLD_NOLOAD route: fwx loads the plugin first, the test reaches it afterwards. */
    void *h;
    env_open();
    fwx_plugin *p = NULL;
    TU_EXPECT_HR(fwx_firewall_load_plugin(fw, tu_plugin_path("tp_good2"), &p), FWX_S_OK);
    tp_control *ctl = tp_attached("tp_good2", &h);
    ck_assert_int_eq(ctl->n_init, 1);
    ck_assert_str_eq(fwx_plugin_info(p)->name, "good2");
    ck_assert_uint_eq(fwx_plugin_info(p)->filter_guid.bytes[15], 0x02);
    env_close();
    ck_assert_int_eq(ctl->n_shutdown, 1);
    dlclose(h);
}
END_TEST

/* ---- two firewalls on two threads --------------------------------------------------------- */

/* Two threads meet here: each waits (at most TWO_FW_WAIT_S) until both have arrived. */
#define TWO_FW_WAIT_S 10

typedef struct rendezvous {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int arrived[2];
} rendezvous;

/* Returns 0 once both threads reached point `k`, -1 if the other did not come in time. */
static int rendezvous_meet(rendezvous *r, int k)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += TWO_FW_WAIT_S;
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    r->arrived[k]++;
    pthread_cond_broadcast(&r->cv);
    while (r->arrived[k] < 2 && rc == 0)
        rc = pthread_cond_timedwait(&r->cv, &r->mu, &until);
    int ok = r->arrived[k] >= 2;
    pthread_mutex_unlock(&r->mu);
    return ok ? 0 : -1;
}

typedef struct fw_thread {
    const char *plugin_path; /* a copy: tu_plugin_path's buffer is not for threads */
    const char *client, *peer, *target;
    rendezvous *rv;
    /* results, checked by the main thread */
    fwx_result load, open, afc;
    int met;
    char owner[64];
    int n_grants;
    int loop_closed;
} fw_thread;

/* Both filters are inside their handlers (each firewall's current plugin is set) when either
   asks for its permission, and neither returns before both have asked: a current plugin shared
   between firewalls would give both grants to the same plugin. */
static fwx_result afc_at_rendezvous(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *s, const FwxFirewallEvent *ev)
{
    (void)sf;
    fw_thread *t = ctl->arg;
    if (ev->EventType != fwx_Connect_Tcp)
        return FWX_S_OK;
    if (rendezvous_meet(t->rv, 0) != 0)
        return FWX_S_OK;
    struct sockaddr_storage target = tu_addr(t->target);
    /* No session filter passed: the owner can only come from the current plugin. */
    t->afc = IFWXSession_AllowFutureConnect(s, TU_SA(target), tu_len(&target), NULL, 0, FWX_PROTOCOL_TCP, 0,
                                            &FWX_GUID_NULL, NULL, NULL, ev->Parameters.Connect.piConnection, NULL);
    t->met = rendezvous_meet(t->rv, 1) == 0;
    return FWX_S_OK;
}

static void grant_owner(void *arg, const fwx_object_info *i)
{
    fw_thread *t = arg;
    if (i->kind != FWX_OBJECT_GRANT)
        return;
    t->n_grants++;
    snprintf(t->owner, sizeof t->owner, "%s", i->owner);
}

static void *fw_thread_main(void *arg)
{
    fw_thread *t = arg;
    uv_loop_t l;
    fwx_firewall *f = NULL;
    t->afc = t->open = t->load = FWX_E_FAIL;
    if (uv_loop_init(&l) != 0)
        return NULL;
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.log_level = FWX_LOG_ERROR;
    if (fwx_firewall_new(&l, &o, &f) == FWX_S_OK) {
        t->load = fwx_firewall_load_plugin(f, t->plugin_path, NULL);
        struct sockaddr_storage c = tu_addr(t->client), p = tu_addr(t->peer);
        fwx_session_params sp = {.struct_size = sizeof sp, .source = fwxSourceNAT, .client = TU_SA(c),
                                 .client_len = tu_len(&c)};
        IFWXSession *s = NULL;
        IFWXConnection *conn = NULL;
        if (t->load == FWX_S_OK && fwx_session_open(f, &sp, &s) == FWX_S_OK) {
            fwx_connection_params cp = {.struct_size = sizeof cp, .event = fwx_Connect_Tcp, .protocol = FWX_PROTOCOL_TCP,
                                        .external_peer = TU_SA(p), .external_peer_len = tu_len(&p)};
            t->open = fwx_connection_open(s, &cp, &conn);
            fwx_firewall_list(f, FWX_OBJECT_GRANT, grant_owner, t);
            fwx_connection_close(conn);
            fwx_session_close(s);
            IFWXSession_Release(s);
        }
        fwx_firewall_close(f, NULL, NULL);
    }
    for (int i = 0; i < 100 && uv_run(&l, UV_RUN_NOWAIT) != 0; i++)
        ;
    t->loop_closed = uv_loop_close(&l) == 0;
    return NULL;
}

START_TEST(two_firewalls_two_threads_attribution)
{
    /* Each firewall, on its own thread and loop, loads its own plugin. */
    void *ha, *hb;
    tp_control *ca = tu_plugin_map("tp_good", &ha), *cb = tu_plugin_map("tp_good2", &hb);
    char pa[4096], pb[4096];
    snprintf(pa, sizeof pa, "%s", tu_plugin_path("tp_good"));
    snprintf(pb, sizeof pb, "%s", tu_plugin_path("tp_good2"));
    rendezvous rv = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {0, 0}};
    fw_thread a = {.plugin_path = pa, .client = "10.0.0.8", .peer = "198.51.100.7:21", .target = "198.51.100.7:50001",
                   .rv = &rv};
    fw_thread b = {.plugin_path = pb, .client = "10.0.0.9", .peer = "198.51.100.8:21", .target = "198.51.100.8:50002",
                   .rv = &rv};
    ca->hooks = cb->hooks = fwx_Connect_Tcp | fwxSourceNAT;
    ca->on_event = cb->on_event = afc_at_rendezvous;
    ca->arg = &a;
    cb->arg = &b;
    pthread_t ta, tb;
    ck_assert_int_eq(pthread_create(&ta, NULL, fw_thread_main, &a), 0);
    ck_assert_int_eq(pthread_create(&tb, NULL, fw_thread_main, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    fw_thread *ts[2] = {&a, &b};
    const char *want[2] = {"good", "good2"};
    for (int i = 0; i < 2; i++) {
        TU_EXPECT_HR(ts[i]->load, FWX_S_OK);
        TU_EXPECT_HR(ts[i]->open, FWX_S_OK);
        ck_assert_msg(ts[i]->met, "firewall %d: the two handlers did not run at the same time", i);
        TU_EXPECT_HR(ts[i]->afc, FWX_S_OK);
        ck_assert_int_eq(ts[i]->n_grants, 1);
        ck_assert_msg(strcmp(ts[i]->owner, want[i]) == 0, "firewall %d: its permission is owned by \"%s\", not \"%s\"", i,
                      ts[i]->owner, want[i]);
        ck_assert_msg(ts[i]->loop_closed, "firewall %d: its loop did not close clean", i);
    }
    ck_assert_int_eq(ca->n_shutdown, 1);
    ck_assert_int_eq(cb->n_shutdown, 1);
    dlclose(ha);
    dlclose(hb);
}
END_TEST

/* ---- IFWXTimer ------------------------------------------------------------------------- */

/* A completion that counts its calls and its references. */
typedef struct tick_probe {
    IFWXIOCompletion iface;
    uint32_t refs; /* the loop thread's only */
    int calls;
    uintptr_t last_ud;
    int32_t last_ok;
    IFWXTimer *restart; /* when set, the first call arms this timer again (from inside) */
} tick_probe;

static tick_probe *tick_impl(IFWXIOCompletion *i) { return (tick_probe *)(void *)i; }
static fwx_result tick_qi(IFWXIOCompletion *This, const fwx_guid *riid, void **ppv)
{
    (void)riid;
    *ppv = This;
    This->lpVtbl->AddRef(This);
    return FWX_S_OK;
}
static uint32_t tick_addref(IFWXIOCompletion *This) { return ++tick_impl(This)->refs; }
static uint32_t tick_release(IFWXIOCompletion *This) { return --tick_impl(This)->refs; }
static fwx_result tick_complete(IFWXIOCompletion *This, int32_t ok, int32_t err, IFWXIOBuffer *b, uintptr_t ud,
                                const struct sockaddr *a, uint32_t al)
{
    tick_probe *t = tick_impl(This);
    ck_assert_int_eq(err, 0);
    ck_assert_ptr_null(b);
    ck_assert_ptr_null(a);
    ck_assert_uint_eq(al, 0);
    t->calls++;
    t->last_ok = ok;
    t->last_ud = ud;
    if (t->restart != NULL && t->calls == 1)
        TU_EXPECT_HR(IFWXTimer_Start(t->restart, 1, This, 7), FWX_S_OK);
    return FWX_S_OK;
}
static const IFWXIOCompletionVtbl tick_vtbl = {tick_qi, tick_addref, tick_release, tick_complete};

/* A plugin's timer (IID_IFWXTimer on IFWXFirewall): a new object each time, holding nothing
   while disarmed; Start calls the completion once with its user data and holds it only while
   armed; Start again replaces; Stop disarms without a call; a timer held past the firewall's
   close answers FWX_E_TERMINATING and the loop still closes clean. */
START_TEST(timer_one_shot)
{
    env_open();
    IFWXFirewall *ifw = fwx_firewall_iface(fw);
    IFWXTimer *t = (IFWXTimer *)(uintptr_t)1, *t2 = NULL;
    TU_EXPECT_HR(IFWXFirewall_QueryInterface(ifw, &IID_IFWXTimer, (void **)&t), FWX_S_OK);
    ck_assert_ptr_nonnull(t);
    TU_EXPECT_HR(IFWXFirewall_QueryInterface(ifw, &IID_IFWXTimer, (void **)&t2), FWX_S_OK);
    ck_assert_ptr_ne(t, t2);
    TU_EXPECT_REF(t, 1);
    IUnknown *unk = NULL;
    TU_EXPECT_HR(IFWXTimer_QueryInterface(t, &IID_IUnknown, (void **)&unk), FWX_S_OK);
    ck_assert_ptr_eq(unk, (IUnknown *)t);
    IUnknown_Release(unk);
    void *none = (void *)(uintptr_t)1;
    TU_EXPECT_HR(IFWXTimer_QueryInterface(t, &IID_IFWXSession, &none), FWX_E_NOINTERFACE);
    ck_assert_ptr_null(none);

    tick_probe a = {.iface.lpVtbl = &tick_vtbl, .refs = 1}, b = {.iface.lpVtbl = &tick_vtbl, .refs = 1};
    TU_EXPECT_HR(IFWXTimer_Start(t, 10, NULL, 0), FWX_E_POINTER);
    TU_EXPECT_HR(IFWXTimer_Start(t, 10, &a.iface, 42), FWX_S_OK);
    TU_EXPECT_REF(&a.iface, 2); /* held while armed */
    tu_loop_run_for(&loop, 100);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(a.last_ok, 1);
    ck_assert_uint_eq(a.last_ud, 42);
    TU_EXPECT_REF(&a.iface, 1); /* let go after the call */
    tu_loop_run_for(&loop, 50);
    ck_assert_int_eq(a.calls, 1); /* one shot */

    /* Start on an armed timer replaces: the first completion is released, never called. */
    TU_EXPECT_HR(IFWXTimer_Start(t, 5000, &a.iface, 1), FWX_S_OK);
    TU_EXPECT_HR(IFWXTimer_Start(t, 10, &b.iface, 2), FWX_S_OK);
    TU_EXPECT_REF(&a.iface, 1);
    tu_loop_run_for(&loop, 100);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(b.calls, 1);
    ck_assert_uint_eq(b.last_ud, 2);

    /* Stop disarms without a call; armed again from inside its own call, it fires again. */
    TU_EXPECT_HR(IFWXTimer_Start(t2, 10, &b.iface, 3), FWX_S_OK);
    TU_EXPECT_HR(IFWXTimer_Stop(t2), FWX_S_OK);
    TU_EXPECT_HR(IFWXTimer_Stop(t2), FWX_S_OK);
    TU_EXPECT_REF(&b.iface, 1);
    a.calls = 0;
    a.restart = t2;
    TU_EXPECT_HR(IFWXTimer_Start(t2, 0, &a.iface, 6), FWX_S_OK);
    tu_loop_run_for(&loop, 100);
    ck_assert_int_eq(a.calls, 2);
    ck_assert_uint_eq(a.last_ud, 7);
    ck_assert_int_eq(b.calls, 1);
    TU_EXPECT_REF(&a.iface, 1);

    /* Released while armed: disarmed, the completion let go of. */
    TU_EXPECT_HR(IFWXTimer_Start(t2, 10, &b.iface, 4), FWX_S_OK);
    ck_assert_uint_eq(IFWXTimer_Release(t2), 0);
    TU_EXPECT_REF(&b.iface, 1);
    tu_loop_run_for(&loop, 50);
    ck_assert_int_eq(b.calls, 1);

    /* Held past the close: the firewall lets go of it, its completion too. */
    TU_EXPECT_HR(IFWXTimer_Start(t, 5000, &b.iface, 5), FWX_S_OK);
    fwx_firewall_close(fw, NULL, NULL);
    fw = NULL;
    TU_EXPECT_REF(&b.iface, 1);
    TU_EXPECT_HR(IFWXTimer_Start(t, 10, &b.iface, 5), FWX_E_TERMINATING);
    TU_EXPECT_HR(IFWXTimer_Stop(t), FWX_S_OK);
    tu_loop_run_for(&loop, 20);
    ck_assert_uint_eq(IFWXTimer_Release(t), 0);
    ck_assert_int_eq(b.calls, 1);
    tu_loop_close_clean(&loop);
}
END_TEST

static Suite *plugin_suite(void)
{
    const tu_case cases[] = {
        {"load_good_once", load_good_once},
        {"refuse_newer_abi", refuse_newer_abi},
        {"refuse_no_symbol", refuse_no_symbol},
        {"refuse_failing_init", refuse_failing_init},
        {"refuse_missing_file", refuse_missing_file},
        {"load_dir", load_dir},
        {"load_dir_all_good", load_dir_all_good},
        {"duplicate_guid", duplicate_guid},
        {"attach_once_per_session", attach_once_per_session},
        {"attach_forced_by_attachfilter", attach_forced_by_attachfilter},
        {"session_hooks_narrow", session_hooks_narrow},
        {"session_hooks_widen", session_hooks_widen},
        {"attach_decline", attach_decline},
        {"attach_fail", attach_fail},
        {"hook_source_wsp_only", hook_source_wsp_only},
        {"hook_source_none", hook_source_none},
        {"manifest_masks_hooks", manifest_masks_hooks},
        {"manifest_quiet_when_inside", manifest_quiet_when_inside},
        {"unload", unload},
        {"unload_withdraws_bound_ports", unload_withdraws_bound_ports},
        {"unload_then_reload_path", unload_then_reload_path},
        {"close_with_live_session", close_with_live_session},
        {"close_twice_and_callback", close_twice_and_callback},
        {"load_after_close_starts", load_after_close_starts},
        {"control_block_after_load", control_block_after_load},
        {"two_firewalls_two_threads", two_firewalls_two_threads_attribution},
        {"timer_one_shot", timer_one_shot},
    };
    return TU_SUITE("plugin", cases, 0);
}

int main(void) { return tu_run_suite(plugin_suite()); }
