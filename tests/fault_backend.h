/*
 * fwx tests - a fault-injecting backend (the idea of SQLite's src/test_vfs.c).
 *
 * `fault_backend` is a version-1 ::fwx_backend named "fault". It carries nothing out: it
 * records every grant it holds and every call the core makes, and it can be told to fail the
 * n-th grant_add. It implements list, relay (recording kernel_mode) and kill, and leaves
 * listen, unlisten and create_socket NULL, so the core must do without them.
 *
 * State is process-wide (one instance at a time, as a test opens one firewall); Check forks
 * each test, so every test starts from a clean state. fault_backend_reset() clears it anyway.
 * Not thread-safe ([loop-thread], like the core).
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_FAULT_BACKEND_H
#define FWX_FAULT_BACKEND_H

#include <fwx/fwx.h>

/** The backend's registered name. */
#define FAULT_BACKEND_NAME "fault"

/** Most grants held and calls recorded; beyond that, grant_add fails with FWX_E_OUTOFMEMORY
    and calls are counted but not recorded. */
#define FAULT_BACKEND_MAX_GRANTS 256
#define FAULT_BACKEND_MAX_CALLS 1024

/** The backend; register it with fwx_backend_register(&fault_backend). */
extern const fwx_backend fault_backend;

/** What the core called. */
typedef enum fault_op {
    FAULT_OP_OPEN = 1,
    FAULT_OP_CLOSE,
    FAULT_OP_GRANT_ADD,
    FAULT_OP_GRANT_REMOVE,
    FAULT_OP_RELAY,
    FAULT_OP_KILL,
    FAULT_OP_LIST,
} fault_op;

/** One grant the backend holds: the fields a real backend would act on. */
typedef struct fault_grant {
    fwx_grant_kind kind;
    uint64_t id;
    int32_t protocol;
    struct sockaddr_storage gateway;
    struct sockaddr_storage target;
    struct sockaddr_storage client;
    uint32_t flags;
    int32_t kernel_mode;
    int32_t backlog;
    uint64_t expires_ms;
} fault_grant;

/** One recorded call. */
typedef struct fault_call {
    fault_op op;
    uint64_t id;           /**< grant_add / grant_remove: the grant id */
    uint16_t gateway_port; /**< grant_add: the gateway port asked for */
    fwx_grant_kind kind;   /**< grant_add: its kind */
    IFWXConnection *conn;  /**< relay / kill: the connection (compared by pointer only) */
    int32_t kernel_mode;   /**< grant_add / relay: kernel_mode */
    fwx_result result;     /**< what the backend answered */
} fault_call;

/** Forgets everything: grants, calls, counters, the pending fault. The registration stays. */
void fault_backend_reset(void);

/**
 * Makes the @p n-th call of grant_add (counting from 1 since the last reset, failed calls
 * included) fail with @p code, once. @p n = 0 cancels a pending fault.
 */
void fault_backend_fail_at(unsigned n, fwx_result code);

/** Makes every relay() fail with @p code (FWX_S_OK: succeed again). */
void fault_backend_fail_relay(fwx_result code);

/** Makes open() fail with @p code (FWX_S_OK: succeed again). */
void fault_backend_fail_open(fwx_result code);

/** Grants held now, in the order they were added. */
size_t fault_backend_n_grants(void);
/** The i-th grant held (i < fault_backend_n_grants()), or NULL. */
const fault_grant *fault_backend_grant(size_t i);
/** The held grant with @p id, or NULL. */
const fault_grant *fault_backend_find(uint64_t id);
/** How many held grants have @p kind. */
size_t fault_backend_count_kind(fwx_grant_kind kind);

/** Calls recorded since the last reset. */
size_t fault_backend_n_calls(void);
/** The i-th recorded call, or NULL. */
const fault_call *fault_backend_call(size_t i);
/** How many calls of @p op were made since the last reset. */
unsigned fault_backend_count(fault_op op);
/** The last recorded call of @p op, or NULL. */
const fault_call *fault_backend_last(fault_op op);

/** The firewall the backend is open for, or NULL when closed. */
fwx_firewall *fault_backend_firewall(void);
/** Whether an instance is open now. */
int fault_backend_is_open(void);

#endif
