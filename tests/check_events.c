/*
 * fwx tests - what operators' tools ask of the core: fwx_firewall_kill,
 * fwx_firewall_explain, the event sink and plugin call timing (lib/core/events.c).
 *
 * The network: client C 10.0.0.8 inside, gateway 203.0.113.1 outside, server S
 * 198.51.100.7 (documentation ranges; nothing is sent: no backend).
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_EV 32

typedef struct seen {
    fwx_event_type type;
    uint64_t session, id;
    uint64_t bytes_in, bytes_out;
    fwx_result result;
    char reason[32], rule[96], name[32];
} seen;

typedef struct fx {
    uv_loop_t loop;
    fwx_firewall *fw;
    IFWXSession *s;
    seen ev[MAX_EV];
    int n;
} fx;

static void on_event(void *arg, const fwx_event *e)
{
    fx *f = arg;
    ck_assert_uint_eq(e->struct_size, sizeof *e);
    ck_assert_ptr_nonnull(e->reason);
    ck_assert_ptr_nonnull(e->rule);
    ck_assert_ptr_nonnull(e->name);
    ck_assert_ptr_nonnull(e->detail);
    if (f->n >= MAX_EV)
        return;
    seen *s = &f->ev[f->n++];
    s->type = e->type;
    s->session = e->session_id;
    s->id = e->id;
    s->bytes_in = e->bytes_in;
    s->bytes_out = e->bytes_out;
    s->result = e->result;
    snprintf(s->reason, sizeof s->reason, "%s", e->reason);
    snprintf(s->rule, sizeof s->rule, "%s", e->rule);
    snprintf(s->name, sizeof s->name, "%s", e->name);
}

static const char *POLICY =
    "networks = { internal = { ranges = [ \"10.0.0.0/8\" ]; }; };\n"
    "relationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"
    "protocols = (\n"
    "  { name = \"http\"; guid = \"{11111111-0000-0000-0000-000000000080}\"; protocol = \"tcp\"; port = 80; },\n"
    "  { name = \"smtp\"; guid = \"{11111111-0000-0000-0000-000000000025}\"; protocol = \"tcp\"; port = 25; } );\n"
    "rules = (\n"
    "  { name = \"web\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];\n"
    "    protocols = [ \"http\" ]; } );\n";

/* Loads policy text and makes it the firewall's (the one before is freed). */
static void fx_set_policy(fx *f, const char *text, const char *name)
{
    fwx_policy *p = NULL;
    fwx_config_error err;
    fwx_result hr = fwx_policy_load_string(text, name, &p, &err);
    ck_assert_msg(hr == FWX_S_OK, "%s:%d: %s", err.file, err.line, err.message);
    TU_EXPECT_HR(fwx_firewall_set_policy(f->fw, p), FWX_S_OK);
}

static void fx_open(fx *f, bool with_policy)
{
    static struct sockaddr_storage local[1];
    memset(f, 0, sizeof *f);
    ck_assert_int_eq(uv_loop_init(&f->loop), 0);
    local[0] = tu_addr("203.0.113.1");
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.local_addresses = local;
    o.n_local_addresses = 1;
    o.log_level = FWX_LOG_ERROR;
    TU_EXPECT_HR(fwx_firewall_new(&f->loop, &o, &f->fw), FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_set_event_sink(f->fw, on_event, f), FWX_S_OK);
    if (with_policy)
        fx_set_policy(f, POLICY, "ev.cfg");
    struct sockaddr_storage c = tu_addr("10.0.0.8");
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(c), tu_len(&c), NULL, 0, NULL};
    TU_EXPECT_HR(fwx_session_open(f->fw, &sp, &f->s), FWX_S_OK);
}

static void fx_close(fx *f)
{
    if (f->s != NULL) {
        fwx_session_close(f->s);
        IFWXSession_Release(f->s);
    }
    fwx_firewall_close(f->fw, NULL, NULL);
    tu_loop_close_clean(&f->loop);
}

static fwx_result open_conn(fx *f, const char *dst, IFWXConnection **out)
{
    struct sockaddr_storage d = tu_addr(dst), gl = tu_addr("203.0.113.1:41000");
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(d), tu_len(&d),
                                TU_SA(gl), tu_len(&gl), NULL, 0, 0, NULL};
    return fwx_connection_open(f->s, &cp, out);
}

static void last_id_cb(void *arg, const fwx_object_info *i)
{
    *(uint64_t *)arg = i->id;
}

START_TEST(events_of_a_session_and_its_connections)
{
    fx f;
    fx_open(&f, true);
    ck_assert_int_eq(f.n, 1);
    ck_assert_int_eq(f.ev[0].type, FWX_EVENT_SESSION_OPENED);
    ck_assert_str_eq(f.ev[0].name, "nat");
    uint64_t sid = f.ev[0].session;
    ck_assert_uint_ne(sid, 0);

    IFWXConnection *c = NULL;
    TU_EXPECT_HR(open_conn(&f, "198.51.100.7:80", &c), FWX_S_OK);
    ck_assert_int_eq(f.n, 2);
    ck_assert_int_eq(f.ev[1].type, FWX_EVENT_CONNECTION_OPENED);
    ck_assert_uint_eq(f.ev[1].session, sid);
    ck_assert_str_eq(f.ev[1].rule, "web");
    ck_assert_str_eq(f.ev[1].name, "primary");
    fwx_connection_count_bytes(c, 1234, 99);

    IFWXConnection *d = NULL;
    TU_EXPECT_HR(open_conn(&f, "198.51.100.7:25", &d), FWX_E_PROTOCOL_RULES_DENIED);
    ck_assert_ptr_null(d);
    ck_assert_int_eq(f.n, 3);
    ck_assert_int_eq(f.ev[2].type, FWX_EVENT_CONNECTION_REFUSED);
    ck_assert_int_eq(f.ev[2].result, FWX_E_PROTOCOL_RULES_DENIED);
    ck_assert_str_eq(f.ev[2].reason, "protocol_rules");
    ck_assert_str_eq(f.ev[2].rule, "default");

    /* A permission a filter would set up, then withdrawn with the session. */
    struct sockaddr_storage t = tu_addr("198.51.100.7:50000");
    TU_EXPECT_HR(IFWXSession_AllowFutureConnect(f.s, TU_SA(t), tu_len(&t), NULL, 0, FWX_PROTOCOL_TCP, 0,
                                                &FWX_GUID_NULL, NULL, NULL, c, NULL),
                 FWX_S_OK);
    ck_assert_int_eq(f.n, 4);
    ck_assert_int_eq(f.ev[3].type, FWX_EVENT_PERMISSION_ADDED);
    ck_assert_str_eq(f.ev[3].name, "permission");

    fwx_connection_close(c);
    ck_assert_int_eq(f.n, 5);
    ck_assert_int_eq(f.ev[4].type, FWX_EVENT_CONNECTION_CLOSED);
    ck_assert_uint_eq(f.ev[4].bytes_in, 1234);
    ck_assert_uint_eq(f.ev[4].bytes_out, 99);

    fwx_session_close(f.s);
    ck_assert_int_eq(f.n, 7);
    ck_assert_int_eq(f.ev[5].type, FWX_EVENT_PERMISSION_REMOVED);
    ck_assert_uint_eq(f.ev[5].id, f.ev[3].id);
    ck_assert_int_eq(f.ev[6].type, FWX_EVENT_SESSION_ENDED);
    ck_assert_uint_eq(f.ev[6].session, sid);

    TU_EXPECT_HR(fwx_firewall_set_event_sink(f.fw, NULL, NULL), FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_set_event_sink(NULL, on_event, &f), FWX_E_POINTER);
    fx_close(&f);
}
END_TEST

/* A connection keeps the name of the rule that allowed it (one copy per name, shared, counted:
   lib/core/connection.c) past a policy reload that frees the policy's own text, and past the
   other connections of that rule; a long name is kept whole. */
START_TEST(rule_name_outlives_reload)
{
    fx f;
    fx_open(&f, true);
    IFWXConnection *c = NULL, *d = NULL, *e = NULL;
    TU_EXPECT_HR(open_conn(&f, "198.51.100.7:80", &c), FWX_S_OK);
    TU_EXPECT_HR(open_conn(&f, "198.51.100.9:80", &d), FWX_S_OK);
    ck_assert_int_eq(f.n, 3);
    ck_assert_str_eq(f.ev[1].rule, "web");
    ck_assert_str_eq(f.ev[2].rule, "web");

    static const char *renamed =
        "networks = { internal = { ranges = [ \"10.0.0.0/8\" ]; }; };\n"
        "relationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"
        "protocols = (\n"
        "  { name = \"http\"; guid = \"{11111111-0000-0000-0000-000000000080}\"; protocol = \"tcp\"; port = 80; } );\n"
        "rules = (\n"
        "  { name = \"browsing-for-everyone-inside-through-the-gateway-with-a-long-name\"; action = \"allow\";\n"
        "    from = [ \"internal\" ]; to = [ \"external\" ]; protocols = [ \"http\" ]; } );\n";
    fx_set_policy(&f, renamed, "renamed.cfg"); /* frees the first policy */

    fwx_connection_close(c);
    ck_assert_int_eq(f.n, 4);
    ck_assert_int_eq(f.ev[3].type, FWX_EVENT_CONNECTION_CLOSED);
    ck_assert_str_eq(f.ev[3].rule, "web");
    TU_EXPECT_HR(open_conn(&f, "198.51.100.8:80", &e), FWX_S_OK);
    ck_assert_int_eq(f.n, 5);
    ck_assert_str_eq(f.ev[4].rule, "browsing-for-everyone-inside-through-the-gateway-with-a-long-name");
    fwx_connection_close(d); /* the last holder of "web" */
    ck_assert_int_eq(f.n, 6);
    ck_assert_str_eq(f.ev[5].rule, "web");
    fwx_connection_close(e);
    ck_assert_int_eq(f.n, 7);
    ck_assert_str_eq(f.ev[6].rule, "browsing-for-everyone-inside-through-the-gateway-with-a-long-name");
    fx_close(&f);
}
END_TEST

/* fwx_firewall_report_refused: a refusal outside the core (a SOCKS cap) becomes the same event,
   with session 0 and its reason; bad arguments are refused and report nothing. */
START_TEST(report_refused_from_outside)
{
    fx f;
    fx_open(&f, false);
    int n0 = f.n;
    struct sockaddr_storage src = tu_addr("10.0.0.9:40000"), dst = tu_addr("203.0.113.1:1080");
    TU_EXPECT_HR(fwx_firewall_report_refused(f.fw, FWX_PROTOCOL_TCP, TU_SA(src), TU_SA(dst), FWX_E_QUOTA_EXCEEDED,
                                             "at its cap"),
                 FWX_S_OK);
    ck_assert_int_eq(f.n, n0 + 1);
    ck_assert_int_eq(f.ev[n0].type, FWX_EVENT_CONNECTION_REFUSED);
    ck_assert_uint_eq(f.ev[n0].session, 0);
    ck_assert_int_eq(f.ev[n0].result, FWX_E_QUOTA_EXCEEDED);
    ck_assert_str_eq(f.ev[n0].reason, "limits");
    ck_assert_str_eq(f.ev[n0].name, "primary");
    TU_EXPECT_HR(fwx_firewall_report_refused(f.fw, FWX_PROTOCOL_UDP, NULL, NULL, FWX_E_IS_BUSY, NULL), FWX_S_OK);
    ck_assert_int_eq(f.n, n0 + 2);
    ck_assert_str_eq(f.ev[n0 + 1].reason, "limits");
    TU_EXPECT_HR(fwx_firewall_report_refused(f.fw, FWX_PROTOCOL_TCP, NULL, NULL, FWX_E_DENIED, NULL), FWX_S_OK);
    ck_assert_str_eq(f.ev[n0 + 2].reason, "filter");
    /* Refused: a success code, another protocol, no firewall. Nothing reported. */
    TU_EXPECT_HR(fwx_firewall_report_refused(f.fw, FWX_PROTOCOL_TCP, NULL, NULL, FWX_S_OK, NULL), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_firewall_report_refused(f.fw, 1, NULL, NULL, FWX_E_DENIED, NULL), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_firewall_report_refused(NULL, FWX_PROTOCOL_TCP, NULL, NULL, FWX_E_DENIED, NULL), FWX_E_POINTER);
    ck_assert_int_eq(f.n, n0 + 3);
    fx_close(&f);
}
END_TEST

START_TEST(kill_by_id)
{
    fx f;
    fx_open(&f, false);
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(open_conn(&f, "198.51.100.7:80", &c), FWX_S_OK);
    uint64_t cid = 0, sid = 0;
    fwx_firewall_list(f.fw, FWX_OBJECT_CONNECTION, last_id_cb, &cid);
    fwx_firewall_list(f.fw, FWX_OBJECT_SESSION, last_id_cb, &sid);
    ck_assert_uint_ne(cid, 0);

    TU_EXPECT_HR(fwx_firewall_kill(f.fw, FWX_OBJECT_GRANT, cid), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_firewall_kill(NULL, FWX_OBJECT_SESSION, sid), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_firewall_kill(f.fw, FWX_OBJECT_CONNECTION, sid), FWX_E_NOT_FOUND); /* a session's id */
    TU_EXPECT_HR(fwx_firewall_kill(f.fw, FWX_OBJECT_SESSION, 987654), FWX_E_NOT_FOUND);

    TU_EXPECT_HR(fwx_firewall_kill(f.fw, FWX_OBJECT_CONNECTION, cid), FWX_S_OK);
    uint32_t flags = 0;
    TU_EXPECT_HR(IFWXConnection_GetConnectionFlags(c, &flags), FWX_S_OK);
    ck_assert_uint_ne(flags & FWX_CONNECTION_TERMINATED, 0);
    ck_assert_int_eq(f.ev[f.n - 1].type, FWX_EVENT_CONNECTION_CLOSED);
    TU_EXPECT_HR(fwx_firewall_kill(f.fw, FWX_OBJECT_CONNECTION, cid), FWX_E_NOT_FOUND); /* gone */
    fwx_connection_close(c); /* the host's reference is still its own */

    TU_EXPECT_HR(fwx_firewall_kill(f.fw, FWX_OBJECT_SESSION, sid), FWX_S_OK);
    ck_assert_int_eq(f.ev[f.n - 1].type, FWX_EVENT_SESSION_ENDED);
    TU_EXPECT_HR(fwx_session_close(f.s), FWX_S_FALSE); /* already ended */
    TU_EXPECT_HR(fwx_firewall_kill(f.fw, FWX_OBJECT_SESSION, sid), FWX_E_NOT_FOUND);
    fwx_firewall_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    TU_EXPECT_HR(fwx_firewall_get_stats(f.fw, &st), FWX_S_OK);
    ck_assert_uint_eq(st.sessions, 0);
    fx_close(&f);
}
END_TEST

static void explain(fx *f, const char *src, const char *dst, int32_t proto, fwx_explanation *x, fwx_result want)
{
    struct sockaddr_storage s = tu_addr(src), d = tu_addr(dst);
    fwx_explain_request rq = {sizeof rq, proto, TU_SA(s), tu_len(&s), TU_SA(d), tu_len(&d), NULL, NULL};
    memset(x, 0, sizeof *x);
    x->struct_size = sizeof *x;
    TU_EXPECT_HR(fwx_firewall_explain(f->fw, &rq, x), want);
}

START_TEST(explain_a_decision)
{
    fx f;
    fx_open(&f, false);
    fwx_explanation x;
    explain(&f, "10.0.0.8", "198.51.100.7:80", FWX_PROTOCOL_TCP, &x, FWX_E_NOT_FOUND); /* no policy */
    fx_close(&f);

    fx_open(&f, true);
    explain(&f, "10.0.0.8", "198.51.100.7:80", FWX_PROTOCOL_TCP, &x, FWX_S_OK);
    TU_EXPECT_HR(x.result, FWX_S_OK);
    ck_assert_str_eq(x.rule, "web");
    ck_assert_int_eq(x.rule_line, 7);
    ck_assert_str_eq(x.protocol, "http");
    ck_assert_str_eq(x.source_network, "internal");
    ck_assert_str_eq(x.destination_network, "external");
    ck_assert_str_eq(x.relationship, "nat");
    ck_assert_str_eq(x.published, "");
    ck_assert_msg(strncmp(x.text, "allowed by rule \"web\" (line 7)", 30) == 0, "%s", x.text);

    explain(&f, "10.0.0.8", "198.51.100.7:25", FWX_PROTOCOL_TCP, &x, FWX_S_OK);
    TU_EXPECT_HR(x.result, FWX_E_PROTOCOL_RULES_DENIED);
    ck_assert_str_eq(x.rule, "");
    ck_assert_int_eq(x.rule_line, 0);
    ck_assert_str_eq(x.protocol, "smtp");

    explain(&f, "198.51.100.7", "10.0.0.8:80", FWX_PROTOCOL_TCP, &x, FWX_S_OK);
    TU_EXPECT_HR(x.result, FWX_E_NETWORK_RULES_DENIED);
    ck_assert_str_eq(x.relationship, "none");

    explain(&f, "10.0.0.8", "198.51.100.7:80", 0, &x, FWX_E_INVALIDARG);
    struct sockaddr_storage s = tu_addr("10.0.0.8");
    fwx_explain_request rq = {sizeof rq, FWX_PROTOCOL_TCP, TU_SA(s), tu_len(&s), NULL, 0, NULL, NULL};
    x.struct_size = sizeof x;
    TU_EXPECT_HR(fwx_firewall_explain(f.fw, &rq, &x), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_firewall_explain(f.fw, NULL, &x), FWX_E_POINTER);
    ck_assert_int_eq(f.n, 1); /* explaining opens nothing: only the fixture's session event */
    fx_close(&f);
}
END_TEST

static void timing_cb(void *arg, const fwx_plugin_timing *t)
{
    (*(int *)arg)++;
    ck_assert_uint_eq(t->struct_size, sizeof *t);
}

START_TEST(plugin_timing_switch)
{
    fx f;
    fx_open(&f, false);
    int n = 0;
    TU_EXPECT_HR(fwx_firewall_time_plugins(f.fw, 1), FWX_S_OK);
    TU_EXPECT_HR(fwx_firewall_plugin_timings(f.fw, timing_cb, &n), FWX_S_OK);
    ck_assert_int_eq(n, 0); /* no plugin loaded */
    TU_EXPECT_HR(fwx_firewall_plugin_timings(f.fw, NULL, &n), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_firewall_time_plugins(NULL, 1), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_firewall_time_plugins(f.fw, 0), FWX_S_OK);
    fx_close(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("events");
    const struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"events", events_of_a_session_and_its_connections},
        {"rule name", rule_name_outlives_reload},
        {"report_refused", report_refused_from_outside},
        {"kill", kill_by_id},
        {"explain", explain_a_decision},
        {"timing", plugin_timing_switch},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return tu_run_suite(s);
}
