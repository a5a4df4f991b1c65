/*
 * fwx tests - shared helpers.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_TESTUTIL_H
#define FWX_TESTUTIL_H

#include <check.h>
#include <stdbool.h>
#include <fwx/fwx.h>
#include <fwx/plugin_helpers.h>
#include <uv.h>

/* An address from text ("10.0.0.8:1025", "[::1]:80", "10.0.0.8"); aborts the test on bad text. */
struct sockaddr_storage tu_addr(const char *text);
#define TU_SA(ss) ((const struct sockaddr *)&(ss))
#define TU_SAM(ss) ((struct sockaddr *)&(ss))
uint32_t tu_len(const struct sockaddr_storage *ss);

/* Wine's EXPECT_REF: asserts an object's reference count without changing it. */
#define TU_EXPECT_REF(obj, n)                                                                     \
    do {                                                                                          \
        (obj)->lpVtbl->AddRef(obj);                                                               \
        uint32_t tu_ref_ = (obj)->lpVtbl->Release(obj);                                           \
        ck_assert_msg(tu_ref_ == (uint32_t)(n), "%s: refcount %u, expected %u", #obj, tu_ref_,     \
                      (unsigned)(n));                                                             \
    } while (0)

/* Asserts a result code and prints both names when it differs. */
#define TU_EXPECT_HR(expr, want)                                                                  \
    do {                                                                                          \
        fwx_result tu_hr_ = (expr);                                                               \
        ck_assert_msg(tu_hr_ == (fwx_result)(want), "%s: got %s (0x%08x), expected %s (0x%08x)",  \
                      #expr, fwx_err_name(tu_hr_), (unsigned)tu_hr_, fwx_err_name((fwx_result)(want)), \
                      (unsigned)(want));                                                          \
    } while (0)

/* The two completions (IFWXIOCompletion) a test data filter of `filter_type` embeds as
   `dirs[2]`, each a `dir_type` with the members `iface`, `f` (the filter) and `d` (its
   direction). They have no count of their own: FWX_IUNKNOWN_IMPL_PART sends AddRef and
   Release to the filter's (`filter_AddRef`, `filter_Release` take its IFWXDataFilter `iface`).
   Defines `prefix_QueryInterface`, `prefix_AddRef`, `prefix_Release`, the vtable `prefix_vtbl` with `complete` as CompleteAsyncIO, and
   `prefix_init(filter_type *)`, which points both completions at the filter. */
#define TU_DIR_COMPLETIONS(prefix, dir_type, filter_type, filter_AddRef, filter_Release, complete)  \
    FWX_IUNKNOWN_IMPL_PART(prefix, IFWXIOCompletion, dir_type, iface, f, iface, filter_AddRef,    \
                           filter_Release, &IID_IFWXIOCompletion)                                 \
    static const IFWXIOCompletionVtbl prefix##_vtbl = {prefix##_QueryInterface, prefix##_AddRef,  \
                                                       prefix##_Release, complete};               \
    static void prefix##_init(filter_type *f)                                                     \
    {                                                                                             \
        for (int d = 0; d < 2; d++) {                                                             \
            f->dirs[d].iface.lpVtbl = &prefix##_vtbl;                                             \
            f->dirs[d].f = f;                                                                     \
            f->dirs[d].d = d;                                                                     \
        }                                                                                         \
    }

/* Closes the sockets a test data filter holds (s[2], NULL when not held), once: *closed says
   whether it already did. */
void tu_sockets_close(IFWXSocket *s[2], bool *closed);

/* A test data filter's SetSockets keeping what it was given: s[0] = in, s[1] = ex (NULL for an
   emulating filter), each with a reference of the filter's own (+1). */
void tu_sockets_take(IFWXSocket *s[2], IFWXSocket *in, IFWXSocket *ex);

/* Releases the sockets a test data filter holds (s[2], NULL when not held), closing them
   first if `close_them`. */
void tu_sockets_release(IFWXSocket *s[2], int close_them);

/* Runs the loop until nothing is pending, then asserts uv_loop_close() returns 0. */
void tu_loop_close_clean(uv_loop_t *loop);

/* Runs the loop for about ms milliseconds (bounded). */
void tu_loop_run_for(uv_loop_t *loop, uint64_t ms);

/* Path of a test plugin built by tests/plugins (name without "lib" and ".so"). */
const char *tu_plugin_path(const char *name);

/*
 * The firewall's log, captured for assertions: pass tu_log_capture as fwx_firewall_options.log
 * and call tu_log_reset() when the firewall is made.  FWX_TEST_LOG=1 also prints each line.
 */
void tu_log_capture(void *arg, fwx_log_level level, const char *message);
void tu_log_reset(void);

/*
 * The number of captured lines containing `a` and, unless NULL, `b`.  Fails the test if the
 * capture overflowed, since a count over a truncated log could pass when it should not.
 */
int tu_log_count(const char *a, const char *b);
/* The first captured line holding a (and b, unless NULL), or NULL. Valid until the next reset. */
const char *tu_log_find(const char *a, const char *b);

/* Runs a suite with Check's forking runner; returns the process exit code. */
int tu_run_suite(Suite *s);

/* One test of a suite's table: its TCase name and its test. */
typedef struct tu_case {
    const char *name;
    const TTest *test;
} tu_case;

/*
 * A suite with one TCase per case of the table (so each test forks on its own), in table order.
 * timeout_s > 0 sets each TCase's timeout; 0 keeps Check's (CK_DEFAULT_TIMEOUT, set by meson).
 */
Suite *tu_suite(const char *name, const tu_case *cases, size_t n, double timeout_s);
#define TU_SUITE(name, cases, timeout_s) tu_suite((name), (cases), sizeof(cases) / sizeof((cases)[0]), (timeout_s))

/* ---- the firewall fixture: a loop, a firewall on it, and what the suites do with them ---- */

/* Options with the log captured for tu_log_count() at debug level; resets the capture. */
void tu_fw_options(fwx_firewall_options *o);

/*
 * Options of a gateway on loopback: its own address 127.0.0.1, loopback hosts as clients and
 * servers (127.0.0.2, 127.0.0.3), ports 40000-60999, the log at error level (debug with
 * FWX_TEST_LOG set) and not captured.
 */
void tu_gw_options(fwx_firewall_options *o);

/* Gives o the two addresses of the suites' paper gateway: 203.0.113.1 outside, 10.0.0.1 inside. */
void tu_fw_gateway_addresses(fwx_firewall_options *o);

/* Initialises loop and makes a firewall on it with o (NULL: the defaults); asserts both. */
void tu_fw_open(uv_loop_t *loop, const fwx_firewall_options *o, fwx_firewall **fw);

/* Closes *fw (if any), sets it to NULL, and asserts that the loop then closes clean. */
void tu_fw_close(uv_loop_t *loop, fwx_firewall **fw);

/* Parses policy text, failing the test with its line and key on an error; the caller owns it. */
fwx_policy *tu_policy(const char *text);

/* tu_policy(text), set on fw (asserts FWX_S_OK). */
void tu_fw_set_policy(fwx_firewall *fw, const char *text);

/*
 * A policy that publishes service "svc" (TCP, inbound, no filter) on 127.0.0.1:listen for the
 * server 127.0.0.3:server, full proxy, from and to localhost. Static buffer.
 */
const char *tu_publish_policy(uint16_t listen, uint16_t server);

/* The firewall's counters now. */
fwx_firewall_stats tu_fw_stats(fwx_firewall *fw);

/*
 * Opens a session of `source` (fwxSourceNAT, ...) for client address text, with the gateway's
 * address on the client's side when gw_inside is not NULL; asserts FWX_S_OK. The caller owns
 * the session (+1).
 */
IFWXSession *tu_session_open(fwx_firewall *fw, uint32_t source, const char *client, const char *gw_inside);

/*
 * A test plugin (tests/plugins) mapped in this process before fwx loads it, so that the test
 * scripts it first (FilterInit reads the hooks at load): returns its control block, and the
 * dlopen handle in *handle unless handle is NULL. Fails the test when either is missing.
 */
typedef struct tp_control tp_control;
tp_control *tu_plugin_map(const char *name, void **handle);

/* Loads test plugin `name` into fw and asserts FWX_S_OK. */
void tu_plugin_load(fwx_firewall *fw, const char *name);

#endif
