/*
 * fwx-gateway: N event loops, one thread and one fwx_firewall each (`--threads N`).
 *
 * The threading model (doc/architecture.md, "Threads"): loop 0 runs on the main thread and
 * owns what the process has once (signals, the control sockets, the metrics listener); loops
 * 1..N-1 run on threads of their own. Each loop has a firewall of its own built from the same
 * configuration, policy and plugins, so a session, its connections, its permissions and the
 * plugins' per-session state live in one loop and are only touched on its thread. Listeners
 * are shared with SO_REUSEPORT (fwx_firewall_options.listen_shared): the kernel spreads new
 * clients over the loops. A loop that needs another loop's firewall (the control socket
 * listing every loop, a reload) asks it with gw_loop_call(), which runs a function on that
 * loop's thread and waits for it.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_GATEWAY_LOOPS_H
#define FWX_GATEWAY_LOOPS_H

#include <fwx/fwx.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/** Most loops a gateway runs. */
#define GW_MAX_LOOPS 64
/** How long gw_loop_call() waits for a loop that has not started the call (ms). */
#define GW_LOOP_CALL_TIMEOUT_MS 5000

typedef struct gw_loop gw_loop;
/** A function run on a loop's thread. */
typedef void (*gw_loop_fn)(gw_loop *L, void *arg);
/** A loop's setup, run on its thread before it runs: 0, or a nonzero status. */
typedef int (*gw_loop_setup_fn)(gw_loop *L, void *arg);

typedef struct gw_job gw_job;

struct gw_loop {
    unsigned index;      /**< 0 for the main thread's loop */
    uv_loop_t *loop;     /**< the loop (loop 0's is the caller's of gw_loops_init) */
    fwx_firewall *fw;    /**< its firewall, NULL before the setup and after the close */
    bool quiet;          /**< its setup runs: what loop 0 has said already is not said again */
    /* private */
    uv_loop_t own;
    uv_thread_t thread;
    uv_async_t wake;     /**< jobs for this loop (loops 1..N-1) */
    uv_mutex_t lock;     /**< guards jobs and open */
    uv_cond_t cond;      /**< a job done, or the setup done */
    gw_job *jobs;
    bool open;           /**< takes jobs */
    bool thread_started;
    int setup_status;    /**< what the setup returned; 1 while it runs */
    gw_loop_setup_fn setup;
    gw_loop_fn stop;
    void *setup_arg;
};

/** Prepares @p n loops; loop 0 is @p loop0 (the main thread's). 0, or -1 if out of memory. [main] */
int gw_loops_init(uv_loop_t *loop0, unsigned n);
/** How many loops there are (after gw_loops_init). [any-thread] */
unsigned gw_loops_count(void);
/** Loop @p i. [any-thread] */
gw_loop *gw_loop_at(unsigned i);
/** The loop of the calling thread, or NULL for a thread that runs none. [any-thread] */
gw_loop *gw_loop_self(void);

/**
 * Starts loop @p L (1..N-1) on a thread of its own: @p setup runs there first and its result
 * is returned here once it is done (0: the loop then runs until @p stop closed its handles).
 * @p stop runs on the loop when gw_loop_stop() asks it to; it must close everything the
 * loop holds. [main]
 */
int gw_loop_start(gw_loop *L, gw_loop_setup_fn setup, gw_loop_fn stop, void *arg);

/**
 * Runs @p fn(@p L, @p arg) on @p L's thread and returns after it ran: inline when called on
 * that thread. 0, or -1 when @p L takes no more calls (stopping) or did not start the call
 * within GW_LOOP_CALL_TIMEOUT_MS (then it never will). [any-thread, never from a loop that
 * @p L may be waiting for]
 */
int gw_loop_call(gw_loop *L, gw_loop_fn fn, void *arg);

/** Asks loop @p L (1..N-1) to run its stop function and end; returns at once. [main] */
void gw_loop_stop(gw_loop *L);

/** Waits for every started loop thread to end and frees what gw_loops_init took. [main] */
void gw_loops_join(void);

#endif
