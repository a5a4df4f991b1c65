/*
 * fwx tests - logging: the record sink (fwx_firewall_set_log_sink) and IFWXHostLog, the way
 * plugins log through the host. Public API only, with the tp_good test plugin for a log object
 * bound to a plugin; except "core_macros_evaluate_once", which holds the core's own logging
 * macros (core/internal.h, core/log.h) to their contract, and "logpace", the once-a-second rule
 * of the backends' refusal lines (util.h).
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "plugins/test_plugin.h"
#include "core/internal.h"
#include "core/log.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

static uv_loop_t loop;
static fwx_firewall *fw;

/* ---- a record sink that keeps the last records -------------------------------------------- */

#define REC_MAX 256
typedef struct rec {
    fwx_log_level level;
    char message[1100];
    uint32_t n;
    char key[40][32];
    fwx_log_type type[40];
    char str[40][128];
    uint64_t u[40];
    int64_t i[40];
} rec;
static rec recs[REC_MAX];
static int n_recs;
static int text_lines;

static void sink(void *arg, const fwx_log_record *r)
{
    ck_assert_ptr_eq(arg, &recs);
    ck_assert_uint_eq(r->struct_size, sizeof *r);
    ck_assert_ptr_nonnull(r->message);
    if (n_recs >= REC_MAX)
        return;
    rec *x = &recs[n_recs++];
    x->level = r->level;
    snprintf(x->message, sizeof x->message, "%s", r->message);
    x->n = r->n_fields;
    ck_assert_uint_le(r->n_fields, 40);
    for (uint32_t k = 0; k < r->n_fields; k++) {
        const fwx_log_field *f = &r->fields[k];
        snprintf(x->key[k], sizeof x->key[k], "%s", f->key);
        x->type[k] = f->type;
        /* A sink sees strings and integers only: addresses arrive as text. */
        ck_assert(f->type == FWX_LOG_STRING || f->type == FWX_LOG_INT || f->type == FWX_LOG_UINT);
        if (f->type == FWX_LOG_STRING)
            snprintf(x->str[k], sizeof x->str[k], "%s", f->value.string);
        else if (f->type == FWX_LOG_UINT)
            x->u[k] = f->value.u;
        else
            x->i[k] = f->value.i;
        for (uint32_t j = 0; j < k; j++)
            ck_assert_msg(strcmp(r->fields[j].key, f->key) != 0, "key %s twice in one record", f->key);
    }
}

static void text_sink(void *arg, fwx_log_level level, const char *message)
{
    (void)arg;
    (void)level;
    (void)message;
    text_lines++;
}

static int field(const rec *x, const char *key)
{
    for (uint32_t k = 0; k < x->n; k++)
        if (strcmp(x->key[k], key) == 0)
            return (int)k;
    return -1;
}

static const rec *find_rec(const char *text)
{
    for (int k = 0; k < n_recs; k++)
        if (strstr(recs[k].message, text) != NULL)
            return &recs[k];
    return NULL;
}

static void env_open(fwx_log_level level)
{
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.log = text_sink;
    o.log_level = level;
    n_recs = 0;
    text_lines = 0;
    tu_fw_open(&loop, &o, &fw);
    TU_EXPECT_HR(fwx_firewall_set_log_sink(fw, sink, &recs), FWX_S_OK);
}

static void env_close(void) { tu_fw_close(&loop, &fw); }

static IFWXSession *open_session(const char *client) { return tu_session_open(fw, fwxSourceNAT, client, NULL); }

static IFWXConnection *open_conn(IFWXSession *s, const char *peer)
{
    struct sockaddr_storage p = tu_addr(peer);
    fwx_connection_params cp = {.struct_size = sizeof cp, .event = fwx_Connect_Tcp, .protocol = FWX_PROTOCOL_TCP,
                                .external_peer = TU_SA(p), .external_peer_len = tu_len(&p)};
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(fwx_connection_open(s, &cp, &c), FWX_S_OK);
    return c;
}

/* The core's lines reach the record sink with their fields; the text sink gets nothing while a
   record sink is set, and everything again after fwx_firewall_set_log_sink(NULL). */
START_TEST(test_core_fields)
{
    env_open(FWX_LOG_DEBUG);
    IFWXSession *s = open_session("10.0.0.8");
    IFWXConnection *c = open_conn(s, "198.51.100.7:21");
    fwx_connection_close(c);
    const rec *o = find_rec("opened for 10.0.0.8");
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(o->level, FWX_LOG_INFO);
    int k = field(o, "session");
    ck_assert_int_ge(k, 0);
    ck_assert_int_eq(o->type[k], FWX_LOG_UINT);
    uint64_t sid = o->u[k];
    ck_assert_str_eq(o->str[field(o, "client")], "10.0.0.8");
    const rec *cl = find_rec(": closed (");
    ck_assert_ptr_nonnull(cl);
    ck_assert_uint_eq(cl->u[field(cl, "session")], sid);
    ck_assert_int_ge(field(cl, "connection"), 0);
    ck_assert_str_eq(cl->str[field(cl, "peer")], "198.51.100.7:21");
    ck_assert_int_ge(field(cl, "bytes_in"), 0);
    ck_assert_int_ge(field(cl, "bytes_out"), 0);
    ck_assert_int_eq(text_lines, 0);

    TU_EXPECT_HR(fwx_firewall_set_log_sink(fw, NULL, NULL), FWX_S_OK);
    int before = n_recs;
    TU_EXPECT_HR(fwx_session_close(s), FWX_S_OK); /* "ended": to the text sink now */
    IFWXSession_Release(s);
    env_close();
    ck_assert_int_eq(n_recs, before);
    ck_assert_int_gt(text_lines, 0);
    TU_EXPECT_HR(fwx_firewall_set_log_sink(NULL, sink, NULL), FWX_E_POINTER);
}
END_TEST

/* fwx_firewall_set_log_level changes the filter from the next line on, for the core's lines and
   for IFWXHostLog::IsEnabled alike; a level out of range is refused and changes nothing. */
START_TEST(test_set_level)
{
    env_open(FWX_LOG_WARN);
    IFWXSession *s = open_session("10.0.0.9");
    ck_assert_ptr_null(find_rec("opened for 10.0.0.9")); /* info, below warn */
    TU_EXPECT_HR(fwx_firewall_set_log_level(fw, (fwx_log_level)4), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_firewall_set_log_level(fw, (fwx_log_level)-1), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_firewall_set_log_level(NULL, FWX_LOG_INFO), FWX_E_POINTER);
    IFWXSession *s2 = open_session("10.0.0.10");
    ck_assert_ptr_null(find_rec("opened for 10.0.0.10")); /* still warn */
    TU_EXPECT_HR(fwx_firewall_set_log_level(fw, FWX_LOG_INFO), FWX_S_OK);
    IFWXSession *s3 = open_session("10.0.0.11");
    const rec *o = find_rec("opened for 10.0.0.11");
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(o->level, FWX_LOG_INFO);
    TU_EXPECT_HR(fwx_firewall_set_log_level(fw, FWX_LOG_ERROR), FWX_S_OK);
    int before = n_recs;
    IFWXSession *sessions[] = {s, s2, s3};
    for (size_t i = 0; i < 3; i++) {
        TU_EXPECT_HR(fwx_session_close(sessions[i]), FWX_S_OK); /* "ended" is info: dropped */
        IFWXSession_Release(sessions[i]);
    }
    ck_assert_int_eq(n_recs, before);
    env_close();
}
END_TEST

/* A log object asked for outside any plugin call logs as the core ("fwx: "); Log checks its
   arguments and the level; fields come after the core's, addresses as text, duplicates of the
   core's keys dropped. */
START_TEST(test_hostlog_calls)
{
    env_open(FWX_LOG_INFO);
    IFWXFirewall *ifw = fwx_firewall_iface(fw);
    TU_EXPECT_REF(ifw, 1);
    IFWXHostLog *log = (IFWXHostLog *)(uintptr_t)1;
    TU_EXPECT_HR(IFWXFirewall_QueryInterface(ifw, &IID_IFWXHostLog, (void **)&log), FWX_S_OK);
    ck_assert_ptr_nonnull(log);
    TU_EXPECT_REF(ifw, 2); /* the log holds the firewall */
    TU_EXPECT_REF(log, 1);
    IUnknown *unk = NULL;
    TU_EXPECT_HR(IFWXHostLog_QueryInterface(log, &IID_IUnknown, (void **)&unk), FWX_S_OK);
    ck_assert_ptr_eq(unk, (IUnknown *)log);
    IUnknown_Release(unk);
    void *none = (void *)(uintptr_t)1;
    TU_EXPECT_HR(IFWXHostLog_QueryInterface(log, &IID_IFWXSession, &none), FWX_E_NOINTERFACE);
    ck_assert_ptr_null(none);

    ck_assert_int_eq(IFWXHostLog_IsEnabled(log, FWX_LOG_INFO), 1);
    ck_assert_int_eq(IFWXHostLog_IsEnabled(log, FWX_LOG_DEBUG), 0);
    ck_assert_int_eq(IFWXHostLog_IsEnabled(log, (fwx_log_level)7), 0);

    IFWXSession *s = open_session("10.0.0.9");
    IFWXConnection *c = open_conn(s, "192.0.2.10:443");
    struct sockaddr_storage a = tu_addr("[2001:db8::1]:53");
    fwx_log_field f[] = {
        FWX_LOG_FIELD_STRING("what", "x\"y"),
        FWX_LOG_FIELD_INT("delta", -5),
        FWX_LOG_FIELD_ADDRESS("target", TU_SA(a)),
        FWX_LOG_FIELD_UINT("session", 999), /* the core's key: dropped */
        FWX_LOG_FIELD_STRING("empty", NULL),
    };
    n_recs = 0;
    TU_EXPECT_HR(IFWXHostLog_Log(log, FWX_LOG_WARN, NULL, c, f, 5, "hello"), FWX_S_OK);
    ck_assert_int_eq(n_recs, 1);
    const rec *r = &recs[0];
    ck_assert_str_eq(r->message, "fwx: hello");
    ck_assert_int_eq(r->level, FWX_LOG_WARN);
    ck_assert_int_lt(field(r, "plugin"), 0); /* not a plugin's */
    ck_assert_str_eq(r->key[0], "session");
    ck_assert_uint_ne(r->u[0], 999);
    ck_assert_str_eq(r->str[field(r, "client")], "10.0.0.9");
    ck_assert_str_eq(r->str[field(r, "peer")], "192.0.2.10:443");
    ck_assert_str_eq(r->str[field(r, "what")], "x\"y");
    ck_assert_int_eq(r->i[field(r, "delta")], -5);
    ck_assert_str_eq(r->str[field(r, "target")], "[2001:db8::1]:53");
    ck_assert_str_eq(r->str[field(r, "empty")], "");
    ck_assert_int_gt(field(r, "what"), field(r, "peer")); /* the core's fields first */

    /* Refusals: nothing is logged. */
    fwx_log_field bad[] = {FWX_LOG_FIELD_STRING("Upper", "v"), FWX_LOG_FIELD_STRING("level", "v"),
                           FWX_LOG_FIELD_STRING("", "v"), FWX_LOG_FIELD_STRING("a_key_that_is_much_too_long_1234", "v"),
                           FWX_LOG_FIELD_ADDRESS("addr", NULL)};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        TU_EXPECT_HR(IFWXHostLog_Log(log, FWX_LOG_WARN, NULL, NULL, &bad[k], 1, "no"), FWX_E_INVALIDARG);
    fwx_log_field typed = FWX_LOG_FIELD_STRING("t", "v");
    typed.type = (fwx_log_type)9;
    TU_EXPECT_HR(IFWXHostLog_Log(log, FWX_LOG_WARN, NULL, NULL, &typed, 1, "no"), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXHostLog_Log(log, (fwx_log_level)4, NULL, NULL, NULL, 0, "no"), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXHostLog_Log(log, FWX_LOG_WARN, NULL, NULL, NULL, 0, NULL), FWX_E_POINTER);
    TU_EXPECT_HR(IFWXHostLog_Log(log, FWX_LOG_WARN, NULL, NULL, NULL, 2, "no"), FWX_E_POINTER);
    fwx_log_field many[33];
    for (size_t k = 0; k < 33; k++)
        many[k] = FWX_LOG_FIELD_UINT("n", k);
    TU_EXPECT_HR(IFWXHostLog_Log(log, FWX_LOG_WARN, NULL, NULL, many, 33, "no"), FWX_E_INVALIDARG);
    TU_EXPECT_HR(IFWXHostLog_Log(log, FWX_LOG_WARN, (IFWXSession *)(void *)c, NULL, NULL, 0, "no"), FWX_E_INVALIDARG);
    /* Filtered by level: S_FALSE, and Logf does not even format. */
    TU_EXPECT_HR(IFWXHostLog_Log(log, FWX_LOG_DEBUG, NULL, NULL, NULL, 0, "no"), FWX_S_FALSE);
    TU_EXPECT_HR(IFWXHostLog_Logf(log, FWX_LOG_DEBUG, NULL, NULL, NULL, 0, "%s", "no"), FWX_S_FALSE);
    ck_assert_int_eq(n_recs, 1);
    /* Logf formats, and a long message is cut, not refused. */
    char big[3000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    TU_EXPECT_HR(IFWXHostLog_Logf(log, FWX_LOG_ERROR, s, NULL, NULL, 0, "n=%d", 42), FWX_S_OK);
    ck_assert_str_eq(recs[1].message, "fwx: n=42");
    TU_EXPECT_HR(IFWXHostLog_Log(log, FWX_LOG_ERROR, NULL, NULL, NULL, 0, big), FWX_S_OK);
    ck_assert_uint_eq(strlen(recs[2].message), strlen("fwx: ") + 1000);

    fwx_connection_close(c);
    IFWXSession_Release(s);
    ck_assert_uint_eq(IFWXHostLog_Release(log), 0);
    TU_EXPECT_REF(ifw, 1);
    env_close();
}
END_TEST

/* A log object asked for inside a plugin's call is the plugin's: its lines are named after it
   and carry the plugin field; after the plugin is unloaded Log answers FWX_E_TERMINATING. */
static IFWXHostLog *plugin_log;

static fwx_result grab_log(tp_control *ctl, IFWXSessionFilter *sf, IFWXSession *session, const FwxFirewallEvent *ev)
{
    (void)sf;
    if (plugin_log == NULL && ev->EventType == fwx_Connect_Tcp) {
        TU_EXPECT_HR(IFWXFirewall_QueryInterface(ctl->fw, &IID_IFWXHostLog, (void **)&plugin_log), FWX_S_OK);
        TU_EXPECT_HR(IFWXHostLog_Log(plugin_log, FWX_LOG_INFO, session, ev->Parameters.Connect.piConnection, NULL, 0,
                                     "seen"),
                     FWX_S_OK);
    }
    return FWX_S_OK;
}

START_TEST(test_hostlog_plugin)
{
    env_open(FWX_LOG_INFO);
    void *h = NULL;
    tp_control *ctl = tu_plugin_map("tp_good", &h);
    ctl->hooks = fwx_Connect_Tcp | fwxSourceNAT;
    ctl->on_event = grab_log;
    plugin_log = NULL;
    fwx_plugin *p = NULL;
    TU_EXPECT_HR(fwx_firewall_load_plugin(fw, tu_plugin_path("tp_good"), &p), FWX_S_OK);
    IFWXSession *s = open_session("10.0.0.8");
    IFWXConnection *c = open_conn(s, "198.51.100.7:21");
    ck_assert_ptr_nonnull(plugin_log);
    const rec *r = find_rec(": seen");
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->message, "good: seen");
    ck_assert_str_eq(r->str[field(r, "plugin")], "good");
    ck_assert_str_eq(r->key[0], "plugin");
    ck_assert_str_eq(r->str[field(r, "peer")], "198.51.100.7:21");
    fwx_connection_close(c);
    IFWXSession_Release(s);
    TU_EXPECT_HR(fwx_plugin_unload(p), FWX_S_OK);
    TU_EXPECT_HR(IFWXHostLog_Log(plugin_log, FWX_LOG_WARN, NULL, NULL, NULL, 0, "too late"), FWX_E_TERMINATING);
    ck_assert_ptr_null(find_rec("too late"));
    IFWXHostLog_Release(plugin_log);
    plugin_log = NULL;
    env_close();
    dlclose(h);
}
END_TEST

static int count_recs(const char *text)
{
    int n = 0;
    for (int k = 0; k < n_recs; k++)
        n += strstr(recs[k].message, text) != NULL;
    return n;
}

/* A warning repeated more than 10 times in a second (here with a different
   number each time, as a stray connection's port) is folded into one "repeated K times" line,
   written once that second is over and another line comes (or at close); info lines that differ
   are records and are never folded; the level filter still applies first. */
START_TEST(test_fold_repeats)
{
    env_open(FWX_LOG_INFO);
    for (int i = 0; i < 50; i++)
        fwx_firewall_log(fw, FWX_LOG_WARN, "stray connection from 192.0.2.1:%d", 40000 + i);
    for (int i = 0; i < 50; i++)
        fwx_firewall_log(fw, FWX_LOG_INFO, "record %d", i);
    for (int i = 0; i < 30; i++)
        fwx_firewall_log(fw, FWX_LOG_INFO, "the same record");
    for (int i = 0; i < 30; i++)
        fwx_firewall_log(fw, FWX_LOG_DEBUG, "below the level");
    ck_assert_int_eq(count_recs("stray connection from"), 10);
    ck_assert_int_eq(count_recs("fwx: record "), 50);
    ck_assert_int_eq(count_recs("the same record"), 10);
    ck_assert_int_eq(count_recs("repeated"), 0); /* not yet: the second is not over */
    ck_assert_int_eq(count_recs("below the level"), 0);
    usleep(1100 * 1000);
    fwx_firewall_log(fw, FWX_LOG_INFO, "a line after the second");
    const rec *r = find_rec("repeated 40 times");
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->level, FWX_LOG_WARN);
    ck_assert_str_eq(r->message, "fwx: ... repeated 40 times (folded, more than 10 a second): fwx: stray connection "
                                 "from 192.0.2.1:40010");
    r = find_rec("repeated 20 times");
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->level, FWX_LOG_INFO);
    ck_assert_ptr_nonnull(strstr(r->message, ": fwx: the same record"));
    ck_assert_int_eq(count_recs("repeated"), 2);
    ck_assert_ptr_nonnull(find_rec("a line after the second"));
    /* a new second: the warning goes out again */
    fwx_firewall_log(fw, FWX_LOG_WARN, "stray connection from 192.0.2.1:%d", 1);
    ck_assert_int_eq(count_recs("stray connection from"), 11 + 1); /* 10, the summary, this one */
    /* folded lines pending at close are not lost */
    for (int i = 0; i < 15; i++)
        fwx_firewall_log(fw, FWX_LOG_ERROR, "an error %d", i);
    int before = n_recs;
    fwx_firewall_close(fw, NULL, NULL);
    fw = NULL;
    tu_loop_close_clean(&loop);
    ck_assert_int_eq(count_recs("an error"), 10 + 1);
    ck_assert_ptr_nonnull(find_rec("repeated 5 times"));
    ck_assert_int_ge(n_recs, before + 1);

    /* log_repeat_limit: another limit, or never */
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.log_repeat_limit = 3;
    n_recs = 0;
    tu_fw_open(&loop, &o, &fw);
    TU_EXPECT_HR(fwx_firewall_set_log_sink(fw, sink, &recs), FWX_S_OK);
    for (int i = 0; i < 20; i++)
        fwx_firewall_log(fw, FWX_LOG_WARN, "stray %d", i);
    ck_assert_int_eq(count_recs("stray"), 3);
    env_close();
    ck_assert_ptr_nonnull(find_rec("repeated 17 times (folded, more than 3 a second)"));
    o.log_repeat_limit = UINT32_MAX;
    n_recs = 0;
    tu_fw_open(&loop, &o, &fw);
    TU_EXPECT_HR(fwx_firewall_set_log_sink(fw, sink, &recs), FWX_S_OK);
    for (int i = 0; i < 20; i++)
        fwx_firewall_log(fw, FWX_LOG_WARN, "stray %d", i);
    env_close();
    ck_assert_int_eq(count_recs("stray"), 20);
    ck_assert_ptr_null(find_rec("repeated"));
}
END_TEST

/* The core's macros test the level before the arguments are formatted, and evaluate the
   firewall and the level once each, whether the line is written or not. */
static int fw_reads, level_reads;
static fwx_firewall *counted_fw(void)
{
    fw_reads++;
    return fw;
}
static fwx_log_level counted_level(fwx_log_level l)
{
    level_reads++;
    return l;
}

START_TEST(test_core_macros_evaluate_once)
{
    env_open(FWX_LOG_WARN);
    fw_reads = level_reads = 0;
    fwx__log(counted_fw(), counted_level(FWX_LOG_WARN), "written %d", 1);
    ck_assert_int_eq(fw_reads, 1);
    ck_assert_int_eq(level_reads, 1);
    ck_assert_ptr_nonnull(find_rec("written 1"));
    fwx__log(counted_fw(), counted_level(FWX_LOG_DEBUG), "not written %d", 2);
    ck_assert_int_eq(fw_reads, 2);
    ck_assert_int_eq(level_reads, 2);
    ck_assert_ptr_null(find_rec("not written 2"));
    fwx__log_at(counted_fw(), counted_level(FWX_LOG_ERROR), NULL, "written %d", 3);
    ck_assert_int_eq(fw_reads, 3);
    ck_assert_int_eq(level_reads, 3);
    ck_assert_ptr_nonnull(find_rec("written 3"));
    env_close();
}
END_TEST

/* fwx__logpace (util.h), the once-a-second rule of the backends' refusal lines (SOCKS caps, out
   of descriptors in the proxy and nft backends): the first event is said, the next ones within
   the second are counted, and the first one after it is said with that count. */
START_TEST(test_logpace)
{
    fwx__logpace p = {0};
    uint32_t unsaid = 99;
    ck_assert(fwx__logpace_say(&p, 0, &unsaid)); /* at loop time 0 too */
    ck_assert_uint_eq(unsaid, 0);
    for (uint64_t t = 1; t < FWX__LOGPACE_MS; t += 111) {
        unsaid = 99;
        ck_assert(!fwx__logpace_say(&p, t, &unsaid));
        ck_assert_uint_eq(unsaid, 0);
    }
    ck_assert(!fwx__logpace_say(&p, FWX__LOGPACE_MS - 1, &unsaid)); /* still within the second */
    ck_assert(fwx__logpace_say(&p, FWX__LOGPACE_MS, &unsaid));
    ck_assert_uint_eq(unsaid, 10); /* t = 1, 112, ..., 999 (nine) and 999 again */
    ck_assert(!fwx__logpace_say(&p, FWX__LOGPACE_MS + 5, &unsaid));
    p.unsaid += 3; /* a caller counting refusals it made itself (the proxy's reserve accepts) */
    ck_assert(fwx__logpace_say(&p, 5000, &unsaid));
    ck_assert_uint_eq(unsaid, 4);
    ck_assert(fwx__logpace_say(&p, 7000, &unsaid)); /* a quiet spell: said, nothing unsaid */
    ck_assert_uint_eq(unsaid, 0);
}
END_TEST

int main(void)
{
    const tu_case cases[] = {
        {"logpace", test_logpace},
        {"core_fields", test_core_fields},
        {"set_level", test_set_level},
        {"hostlog_calls", test_hostlog_calls},
        {"fold_repeats", test_fold_repeats},
        {"hostlog_plugin", test_hostlog_plugin},
        {"core_macros_evaluate_once", test_core_macros_evaluate_once},
    };
    return tu_run_suite(TU_SUITE("log", cases, 0));
}
